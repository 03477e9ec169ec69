"""One run at a time of a bulk operation on an incident (an import, a notice campaign), across
processes and machines, through PostgreSQL advisory locks.

Two runs at once would read the same "not yet there" rows and insert them twice: the loser hit
a unique constraint and died with a traceback (which printed sealed values) half-way. A lock per
incident and operation makes the second run stop at once, before it reads anything: a command
with a clear message, a worker's job by going back to the queue (background.Later). SQLite needs
none: it lets one writer in at a time, and the database file's own lock makes the second run wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from portal.extensions import db

# The first key of the two-key advisory locks (the second is the incident's id). The audit
# chain's lock uses the one-key form, which PostgreSQL keeps apart from these.
IMPORT = 0x1A7_0001
NOTICES = 0x1A7_0002
LETTERS = 0x1A7_0003


class Busy(Exception):
    """Another run of the same operation on the same incident is under way."""


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def hold_for_transaction(operation: int, incident_id: int) -> None:
    """Hold the lock until the session's transaction ends (commit or rollback): for a run that
    is one transaction, such as an import, so the next run sees everything it wrote."""
    if not _postgresql():
        return
    params = {"operation": operation, "incident": incident_id}
    if not db.session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:operation, :incident)"), params
    ):
        raise Busy


@contextmanager
def held(operation: int, incident_id: int) -> Iterator[None]:
    """Hold the lock for the block, on a connection of its own: for a run that commits batch by
    batch, such as queueing notices, whose own transactions end many times. A process that dies
    closes the connection, and PostgreSQL lets go of the lock."""
    if not _postgresql():
        yield
        return
    params = {"operation": operation, "incident": incident_id}
    # Autocommit: a session-level lock outlives transactions, and this connection keeps none
    # open for the whole run (an idle transaction could be ended by the server's timeout).
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not connection.scalar(
            text("SELECT pg_try_advisory_lock(:operation, :incident)"), params
        ):
            raise Busy
        try:
            yield
        finally:
            # Back to the pool, the connection would otherwise keep the lock.
            connection.execute(text("SELECT pg_advisory_unlock(:operation, :incident)"), params)
