"""Whether this instance can serve: the database and Redis answer (what /readyz reports)."""

from __future__ import annotations

import logging
import time

import redis
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from portal.config import redis_options
from portal.extensions import db

log = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"

# PostgreSQL's SQLSTATE classes and codes that mean "the database cannot serve now", not "this
# statement is wrong": connection exceptions (08), insufficient resources (53: too many
# connections, disk full), the server shutting down or restarting (57P01-57P03), a standby that
# is read-only during a failover (25006), and the transient conflicts worth a new try
# (serialization 40001, deadlock 40P01).
_AWAY_CLASSES = ("08", "53")
_AWAY_CODES = ("57P01", "57P02", "57P03", "25006", "40001", "40P01")
# SQLite's result codes with the same meaning: another writer holds the file, or it cannot be
# opened or read (moved away, disk full, an I/O error).
_SQLITE_AWAY = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")


def database_unavailable(error: BaseException) -> bool:
    """Is this the database being away or too busy (a restart, a failover, the network, another
    writer), as opposed to a mistake of ours (a missing column after a deploy without
    `db upgrade`, bad SQL, a constraint)? The first is waited out or answered "try again"; the
    second must stay loud: a 500 with its traceback in the log, a worker that stops."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate:  # PostgreSQL (psycopg)
        return sqlstate[:2] in _AWAY_CLASSES or sqlstate in _AWAY_CODES
    name = getattr(original, "sqlite_errorname", None)
    if name:  # SQLite: an extended name such as SQLITE_BUSY_SNAPSHOT counts as its family
        return name.startswith(_SQLITE_AWAY)
    # psycopg raises OperationalError (or ConnectionTimeout, a kind of it) without a SQLSTATE
    # when no server answered at all: refused, unreachable, silent, closed under it.
    import psycopg

    return isinstance(original, psycopg.OperationalError)


def reason(error: BaseException) -> str:
    """The driver's first line about `error`, for a log: never the statement or its values."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [""])[0][:200]


def _database() -> str:
    try:
        # Its own connection, not the request's unit of work: a probe changes nothing.
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # A database that accepts the connection but does not answer is not ready either.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 2000")
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        log.warning("readiness: the database does not answer (%s)", type(error).__name__)
        return DOWN
    return OK


def _redis(url: str) -> str:
    client = redis.Redis.from_url(url, **redis_options())  # the same short timeouts
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        log.warning("readiness: Redis does not answer (%s)", type(error).__name__)
        return DOWN
    finally:
        client.close()
    return OK


# Each app keeps its last answer, and when it was found: /readyz is public, and each check opens
# a connection to the database and one to Redis, so a flood of probes must not become a flood
# of connections. A load balancer polls every few seconds: an answer a second old is fresh.
FRESH_SECONDS = 1.0


def check() -> dict[str, str]:
    """Each part this instance needs and whether it answers: "ok" or "down"."""
    found = current_app.extensions.get("portal.readiness")
    if found is not None and time.monotonic() - found[0] < FRESH_SECONDS:
        return found[1]
    parts = {"database": _database()}
    if current_app.config["REDIS_URL"]:
        parts["redis"] = _redis(current_app.config["REDIS_URL"])
    current_app.extensions["portal.readiness"] = (time.monotonic(), parts)
    return parts
