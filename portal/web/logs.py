"""The app's log lines: time, level, logger, request id and message, never a secret.

JSON lines in production (one object a line, for a log collector), readable text elsewhere.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from datetime import UTC, datetime
from typing import TextIO

from flask import Flask, g, has_request_context

from portal.web.security import scrub


def _timestamp(record: logging.LogRecord) -> str:
    """UTC, to the millisecond: lines from several machines sort into one story."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestId(logging.Filter):
    """Every record made while a request is handled carries its id (the X-Request-ID header and
    the error page show the same id); '-' outside requests (commands, workers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = (has_request_context() and g.get("request_id")) or "-"
        return True


class TextFormatter(logging.Formatter):
    """`2026-11-27T18:20:20.123Z WARNING portal.web.errors [3f2a...] message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))  # the exception's text too


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, request_id, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Scrubbed field by field, before encoding: a marker never breaks the JSON.
        return json.dumps({key: scrub(str(value)) for key, value in entry.items()})


def handler(production: bool, stream: TextIO | None = None) -> logging.Handler:
    """The portal's log handler: JSON lines in production, text otherwise (stderr unless given)."""
    made = logging.StreamHandler(stream or sys.stderr)
    made.setFormatter(JsonFormatter() if production else TextFormatter())
    made.addFilter(RequestId())
    return made


def _new_request_id() -> None:
    # Our own id for correlating logs and error pages; an incoming header is not trusted. Set
    # before every other hook (this one is registered first), so that a request refused early,
    # by the CSRF check say, has its id in the log line and on the error page too. Set on every
    # request: g outlives one when a caller (a test, a shell) holds the app context.
    g.request_id = secrets.token_hex(8)


def register(app: Flask) -> None:
    """Give each request its id, and send every log record (the app's, its libraries') through
    the portal's handler, unless logging was configured before the app was made."""
    app.before_request(_new_request_id)
    # The portal's own lines from INFO up, whoever configured the handlers.
    logging.getLogger("portal").setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:
        # Someone chose already (an operator's gunicorn --log-config, an embedding program,
        # pytest's capture, a second app in this process): adding ours would print every line
        # twice or in a format they did not ask for. The servers' loggers are scrubbed anyway
        # (security.register). gunicorn without --log-config configures only its own two
        # loggers, which do not propagate, so under it the portal's handler is installed.
        return
    root.addHandler(handler(app.config["PORTAL_ENV"] == "production"))
    # Libraries speak from WARNING up (the root's level; alembic alone says seven things at every
    # start), but Flask-Limiter says which limit was hit at INFO: a sign of guessing.
    logging.getLogger("flask-limiter").setLevel(logging.INFO)
