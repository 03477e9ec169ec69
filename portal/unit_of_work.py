"""One unit of work: the only place that commits.

Services add and flush; they never commit. The edge commits once: a request (at its end, before
the response goes out), a command, a worker iteration. Whatever a service queued in the outbox
leaves in that same commit, or not at all. (indico `RH.process`; flask-security `view_commit`.)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app, has_request_context, request
from sqlalchemy import event, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session

from portal.extensions import db

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD")
# Kept in session.info during a GET or HEAD: what the request wrote, and what it said it would.
_WRITTEN = "portal.get_written"
_DECLARED = "portal.get_declared"


class UndeclaredWrite(RuntimeError):
    """A GET changed the database without saying that the change is its point."""


def commit() -> None:
    """Commit the unit of work: the one commit of the portal."""
    db.session.commit()


def rollback() -> None:
    """Undo the unit of work."""
    db.session.rollback()


def checkpoint() -> None:
    """Commit a finished batch of a long, resumable run (a command or a worker's job), so that
    a rerun after a crash carries on after it. A request is one unit: never in a request."""
    if has_request_context():
        raise RuntimeError("a request commits once, at its end; batches belong to commands")
    commit()


# --- commands and worker iterations ---

# How a command says "no" on purpose (a rejected file, a missing incident): what it recorded on
# the way, such as the audit event of the rejection, is kept.
_ANSWERS = (click.ClickException, click.exceptions.Exit, SystemExit)


@contextmanager
def unit() -> Iterator[None]:
    """One unit outside a request (a command, a worker iteration): commit when it ends; an
    unexpected error rolls back what it did."""
    try:
        yield
    except _ANSWERS:
        commit()
        raise
    except BaseException:
        rollback()
        raise
    commit()


def command(f: Callable) -> Callable:
    """A CLI command is one unit of work: it commits once, at its end."""

    @functools.wraps(f)
    def run(*args, **kwargs):
        with unit():
            return f(*args, **kwargs)

    return run


# --- requests ---


def init_app(app: Flask) -> None:
    """Commit each request once, at its end; keep GET and HEAD free of undeclared writes."""
    # Registered before every other hook: the watch starts before a session is loaded, and the
    # commit runs after every other after_request hook (they run in reverse order).
    app.before_request(_begin_request)
    app.after_request(_end_request)


def _begin_request() -> None:
    info = db.session.info
    info.pop(_WRITTEN, None)
    info.pop(_DECLARED, None)
    if request.method in SAFE_METHODS:
        info[_WRITTEN] = set()
        info[_DECLARED] = set()


def _end_request(response):
    """Commit before the response goes out, also when the view answered an error on purpose
    (a wrong code still counts its try); a failure of ours (5xx) rolls back. A commit that
    fails turns the answer into an error page: nobody is told "done" for what was not kept."""
    info = db.session.info
    written, declared = info.pop(_WRITTEN, None), info.pop(_DECLARED, None)
    if response.status_code >= 500:
        try:
            rollback()
        except DBAPIError:
            # The database is away (the likely reason for this 5xx): there is nothing to undo
            # there, and the error page must still go out.
            log.warning("rollback failed: the database is unreachable")
        return response
    undeclared = sorted(w for w in written or () if not _is_declared(w, declared))
    if undeclared:
        rollback()
        names = ", ".join(f"{table}.{column}" if column else table for table, column in undeclared)
        message = f"{request.method} {request.endpoint} wrote {names} without declaring it"
        if current_app.testing:
            raise UndeclaredWrite(message)
        # Served, but not kept: a page view must not change anything by accident.
        log.error("rolled back: %s", message)
        return response
    commit()
    return response


def write_is_the_point(*targets) -> None:
    """Declare that a GET writes this, on purpose: a model (rows added, changed or removed) or
    one column (that value changed). Say why beside the call. Outside a GET it does nothing."""
    declared = db.session.info.get(_DECLARED)
    if declared is None:
        return
    for target in targets:
        if isinstance(target, type):
            declared.add((target.__table__.name, None))
        else:  # a mapped column, e.g. LoginSession.last_seen_at
            declared.add((target.class_.__table__.name, target.key))


def _is_declared(write: tuple[str, str | None], declared: set | None) -> bool:
    table, _column = write
    return bool(declared) and (write in declared or (table, None) in declared)


@event.listens_for(db.session, "after_flush")
def _note_flush(session: Session, _context) -> None:
    """During a GET, note what each flush writes (before the flush forgets it)."""
    written = session.info.get(_WRITTEN)
    if written is None:
        return
    for instance in (*session.new, *session.deleted):
        written.add((inspect(instance).mapper.local_table.name, None))
    for instance in session.dirty:
        state = inspect(instance)
        table = state.mapper.local_table.name
        for attr in state.mapper.column_attrs:
            if state.attrs[attr.key].history.has_changes():
                written.add((table, attr.key))


@event.listens_for(db.session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    """During a GET, note the tables an UPDATE, DELETE or INSERT statement writes."""
    written = state.session.info.get(_WRITTEN)
    if written is None:
        return
    if state.is_insert or state.is_update or state.is_delete:
        written.add((state.statement.table.name, None))
