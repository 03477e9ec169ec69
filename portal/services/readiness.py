"""Whether this instance can serve: the database and Redis answer (what /readyz reports)."""

from __future__ import annotations

import logging

import redis
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.config import redis_options
from portal.extensions import db

log = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"


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


def check() -> dict[str, str]:
    """Each part this instance needs and whether it answers: "ok" or "down"."""
    parts = {"database": _database()}
    if current_app.config["REDIS_URL"]:
        parts["redis"] = _redis(current_app.config["REDIS_URL"])
    return parts
