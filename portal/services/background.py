"""The job queue: work submitted in a request's transaction, run by a worker, watched through its
progress (imports, notice campaigns, update notices, new-link requests).

A job is run by the handler registered under its kind, in the module that owns the work
(`@job("new_link")` in verification); the app imports those modules when it is created
(`portal.register_jobs`). This module imports no service but the audit trail, so the queue, the
outbox and the services that queue work never import each other in a circle.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from portal import clock, unit_of_work
from portal.backoff import retry_delay
from portal.extensions import db
from portal.models import Job
from portal.models.audit import Actor
from portal.services import audit

log = logging.getLogger(__name__)
STALE = timedelta(minutes=30)  # a "running" job this old lost its worker: run it again

Progress = Callable[[int, int], None]  # (done, total), shown to the admin watching the job
Handler = Callable[[dict, Progress], dict]  # payload -> a short report, nothing personal


@dataclass(frozen=True)
class Registered:
    run: Handler
    # Tried again after a failure, with the outbox's backoff and attempts (a job that stands in
    # for a message, such as a new-link request, must not be lost to a passing error); else a
    # failure ends the job and its page says so (an admin's import is started again by hand).
    retry: bool


HANDLERS: dict[str, Registered] = {}


class Later(Exception):
    """Raised by a handler that cannot start yet (another run holds what it needs): the job goes
    back to the queue for `after`, without counting a try. The worker is free meanwhile, and a
    stop request is not held up by a wait inside the job."""

    def __init__(self, after: timedelta = timedelta(seconds=15)):
        super().__init__(f"later, in {after}")
        self.after = after


def job(kind: str, *, retry: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of jobs of this kind."""

    def register(handler: Handler) -> Handler:
        known = HANDLERS.get(kind)
        if known is not None and _name(known.run) != _name(handler):
            raise ValueError(f"two handlers for job {kind}: {_name(known.run)}, {_name(handler)}")
        HANDLERS[kind] = Registered(handler, retry)
        return handler

    return register


def _name(handler: Handler) -> str:
    return f"{handler.__module__}.{handler.__qualname__}"


def submit(kind: str, payload: dict, *, actor: str, public_id: str | None = None) -> Job:
    """Queue a job (every job is safe to run twice: a worker may die half-way)."""
    if kind not in HANDLERS:
        raise ValueError(f"unknown job {kind}")
    now = clock.now()
    job = Job(
        public_id=public_id or secrets.token_hex(16),
        kind=kind,
        created_by=actor,
        created_at=now,
        next_attempt_at=now,
    )
    job.payload = payload
    db.session.add(job)
    audit.record(
        "job.submitted",
        actor=actor,
        subject_type="job",
        subject_id=job.public_id,
        details={"kind": kind},
    )
    return job


def submit_after(first: Job, kind: str, payload: dict, *, actor: str) -> tuple[Job, bool]:
    """Queue the job that follows `first` (the import of a checked file) once; return it and
    whether it is new. Asked again (a second click, a resent form), the job queued the first
    time is returned: the first import deletes the file, so a second one could only fail."""
    if report(first).get("next_job"):
        return get(report(first)["next_job"]), False
    report_before = first.result
    followed = {**report(first), "next_job": secrets.token_hex(16)}
    # Compare-and-set on the first job's report, so two requests at the same moment cannot both
    # queue a job: on PostgreSQL the second UPDATE waits for the first's commit, then finds the
    # report changed and touches no row; SQLite lets one writer in at a time.
    claimed = db.session.execute(
        update(Job)
        .where(Job.id == first.id, Job.result == report_before)
        .values(result=json.dumps(followed))
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(first)
    if not claimed:
        return get(report(first)["next_job"]), False
    return submit(kind, payload, actor=actor, public_id=followed["next_job"]), True


def get(public_id: str) -> Job | None:
    return db.session.scalar(select(Job).where(Job.public_id == public_id))


def payload(job: Job) -> dict:
    return job.payload


def report(job: Job) -> dict:
    return json.loads(job.result) if job.result else {}


def _claim(now) -> Job | None:
    # FOR UPDATE SKIP LOCKED: two workers never take the same job. The lock ends at the
    # checkpoint in run_one; from then on the status "running" keeps other workers away until
    # the job is stale. (SQLite has no row locks and one writer at a time; there one worker runs.)
    return db.session.scalar(
        select(Job)
        .where(
            or_(
                (Job.status == "queued") & (Job.next_attempt_at <= now),
                (Job.status == "running") & (Job.started_at < now - STALE),
            )
        )
        .order_by(Job.next_attempt_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def run_one() -> Job | None:
    """Claim the oldest due job and run it to the end; None when none is due.

    A worker iteration: the caller's edge commits the job's end (portal.unit_of_work.unit).
    """
    now = clock.now()
    job = _claim(now)
    if job is None:
        return None
    job.status, job.started_at, job.done = "running", now, 0
    job.attempts += 1
    # Kept before the work starts: the admin's page shows the job running, and the row lock
    # ends, so another worker takes the job only once it is stale (its worker died).
    unit_of_work.checkpoint()

    job_id = job.id
    separate = db.engine.dialect.name == "postgresql"

    def progress(done: int, total: int) -> None:
        # Written on a connection of its own: the job's work may be one long transaction (an
        # import is all or nothing) that must not be committed half-way to show a number.
        # SQLite allows one writer at a time, so there the bar jumps from start to end.
        if separate:
            with db.engine.begin() as connection:
                connection.execute(
                    update(Job).where(Job.id == job_id).values(done=done, total=total)
                )

    handler = HANDLERS.get(job.kind)
    try:
        if handler is None:
            raise LookupError(f"no handler for job {job.kind}")
        result = handler.run(job.payload, progress)
    except Later as later:
        unit_of_work.rollback()
        job = db.session.get(Job, job_id)
        job.status, job.attempts = "queued", job.attempts - 1
        job.next_attempt_at = clock.now() + later.after
        return job
    except Exception as exc:  # a job's failure is recorded on the job, never lost in a log
        unit_of_work.rollback()  # what the job did since its claim (an import is all or nothing)
        log.exception("job %s (%s) failed", job.public_id, job.kind)
        job = db.session.get(Job, job_id)
        job.result = json.dumps({"error": type(exc).__name__})
        if handler is not None and handler.retry and job.attempts < _max_attempts():
            job.status = "queued"
            job.next_attempt_at = clock.now() + retry_delay(job.attempts)
            return job
        job.status = "failed"
    else:
        db.session.refresh(job)
        job.status, job.result = "done", json.dumps(result)
        job.done = job.total = max(job.total, job.done, 1)
    job.finished_at = clock.now()
    audit.record(
        "job.finished",
        actor=Actor.JOBS,
        subject_type="job",
        subject_id=job.public_id,
        outcome="success" if job.status == "done" else "failure",
        details={"kind": job.kind},
    )
    return job


def _max_attempts() -> int:
    return current_app.config["OUTBOX_MAX_ATTEMPTS"]
