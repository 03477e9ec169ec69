"""Generic error pages that carry the request id, never a traceback."""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta

from flask import Flask, g, make_response, render_template, request
from flask.globals import request_ctx
from flask_babel import format_timedelta
from flask_babel import gettext as _
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.services import readiness
from portal.web.input import BadInput

log = logging.getLogger(__name__)


def _messages(code: int) -> tuple[str, str]:
    return {
        400: (_("We could not read that request"), _("Please go back and try again.")),
        403: (_("You cannot open this page"), _("If you think you should, contact us.")),
        404: (_("Page not found"), _("Check the address, or start again from the home page.")),
        405: (_("That did not work"), _("Please go back and use the buttons on the page.")),
        413: (_("That file is too large"), _("Please send a smaller file.")),
        415: (_("We could not read that request"), _("Please go back and try again.")),
        429: (_("Too many attempts"), _("Please wait a few minutes and try again.")),
        503: (_("We are very busy right now"), _("Please try again in a few minutes.")),
    }.get(code, (_("Something went wrong on our side"), _("Please try again in a few minutes.")))


def render_error(code: int, advice: str | None = None):
    """The generic error page for an HTTP status (used by other handlers too); `advice`, when
    given, says what to do instead of the status's general advice."""
    title, general = _messages(code)
    advice = advice or general
    request_id = g.get("request_id", "")
    if request_ctx.url_adapter is None:
        # A request refused before routing (an untrusted Host, say) has no URL adapter, so
        # the page could not build its links: answer in plain text instead.
        return f"{title}. {advice}\n", code, {"Content-Type": "text/plain; charset=utf-8"}
    page = render_template(
        "errors/error.html", code=code, title=title, advice=advice, request_id=request_id
    )
    if code == 503:
        # A part is away or too busy: clients and proxies may try again in half a minute.
        return page, code, {"Retry-After": "30"}
    return page, code


def _seconds_until_allowed() -> int:
    """How long until the limit that was hit lets one more request through."""
    from portal.extensions import limiter

    hit = limiter.current_limit  # the breached limit, for this request
    if hit is None:
        return 3600
    return max(1, math.ceil(hit.reset_at - time.time()))


def render_rate_limited():
    """Too many requests: what happened, when to try again, and a way to a person.

    htmx requests get the same page: the htmx config in base.html swaps its main content in.
    """
    seconds = _seconds_until_allowed()
    minutes = max(1, math.ceil(seconds / 60))
    wait = format_timedelta(timedelta(minutes=minutes), granularity="minute")
    # Staff pages never send anyone to the customers' help form.
    for_staff = request.blueprint in ("staff", "admin")
    response = make_response(
        render_template("errors/rate_limited.html", wait=wait, for_staff=for_staff), 429
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def register(app: Flask) -> None:
    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        # A limit (per customer, per subject or per network) was hit; Flask-Limiter logs which.
        return render_rate_limited()

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        # A security event worth a line (no token values in it), then the ordinary 400 page.
        log.warning("csrf refused: %s (request %s)", error.description, g.get("request_id", ""))
        return render_error(400)

    @app.errorhandler(BadInput)
    def bad_input(error: BadInput):
        # Refused at the edge (portal/web/input.py) before anything read it: say what was wrong.
        return render_error(400, advice=str(error.description))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        original = getattr(error, "original_exception", None)
        if isinstance(original, DBAPIError) and readiness.database_unavailable(original):
            # The commit at the request's end failed (portal/unit_of_work.py): the database
            # went away mid-request. Flask has logged it; the person gets "try again".
            return database_error(original)
        response = render_error(error.code)
        if error.code == 405 and error.valid_methods:
            return (*response, {"Allow": ", ".join(error.valid_methods)})
        return response

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError):
        if not readiness.database_unavailable(error):
            return unexpected(error)
        # The database is away (restarting, failing over, unreachable) or too busy: a calm
        # "try again", not a 500. One line for the operator: the driver's reason, never the
        # statement or its parameters (they can hold personal data), and no traceback.
        log.error(
            "database unavailable: %s: %s (request %s)",
            type(error.orig).__name__,
            readiness.reason(error),
            g.get("request_id", ""),
        )
        from portal.extensions import login_manager

        # Nobody is signed in on this page: the error page must not ask the database again.
        login_manager._update_request_context_with_user()
        return render_error(503)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        away = _database_away_behind(error)
        if away is not None:
            # Raised as something else because the database went away under it (the session
            # asked again after a dropped connection, a template's lazy load): still "try again".
            return database_error(away)
        # The last resort: log the failure against the request id, show nothing of it.
        log.exception("unhandled error (request %s)", g.get("request_id", ""))
        return render_error(InternalServerError.code)


def _database_away_behind(error: BaseException) -> DBAPIError | None:
    """The database error that caused `error`, if the database being away is what did."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DBAPIError) and readiness.database_unavailable(error):
            return error
        error = error.__cause__ or error.__context__
    return None
