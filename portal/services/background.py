"""Background jobs: submitted by a request, run by a worker, watched through their progress."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select, update

from portal import clock, unit_of_work
from portal.extensions import db
from portal.models import Incident, Job
from portal.models.audit import Actor
from portal.services import audit

log = logging.getLogger(__name__)
STALE = timedelta(minutes=30)  # a "running" job this old lost its worker: run it again


def submit(kind: str, payload: dict, *, actor: str) -> Job:
    """Queue a job (every job is safe to run twice: a worker may die half-way)."""
    if kind not in HANDLERS:
        raise ValueError(f"unknown job {kind}")
    job = Job(public_id=secrets.token_hex(16), kind=kind, created_by=actor, created_at=clock.now())
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


def get(public_id: str) -> Job | None:
    return db.session.scalar(select(Job).where(Job.public_id == public_id))


def payload(job: Job) -> dict:
    return job.payload


def report(job: Job) -> dict:
    return json.loads(job.result) if job.result else {}


def run_one() -> Job | None:
    """Claim the oldest waiting job and run it to the end; None when there is none.

    A worker iteration: the caller's edge commits the job's end (portal.unit_of_work.unit).
    """
    now = clock.now()
    job = db.session.scalar(
        select(Job)
        .where(
            or_(Job.status == "queued", (Job.status == "running") & (Job.started_at < now - STALE))
        )
        .order_by(Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return None
    job.status, job.started_at, job.done = "running", now, 0
    # Kept before the work starts: the admin's page shows the job running, and the row lock
    # ends, so another worker takes the job only once it is stale (its worker died).
    unit_of_work.checkpoint()
    payload = job.payload

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

    try:
        result = HANDLERS[job.kind](payload, progress)
    except Exception as exc:  # a job's failure is recorded on the job, never lost in a log
        unit_of_work.rollback()  # what the job did since its claim (an import is all or nothing)
        log.exception("job %s (%s) failed", job.public_id, job.kind)
        job = db.session.get(Job, job.id)
        job.status, job.result = "failed", json.dumps({"error": type(exc).__name__})
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


# --- the jobs ---


def _validate_import(payload: dict, progress: Callable[[int, int], None]) -> dict:
    from portal.services.imports import validate

    progress(0, 1)
    result = validate(Path(payload["path"]))
    if result.problem_count:
        Path(payload["path"]).unlink(missing_ok=True)  # rejected: nothing keeps its data
    return {
        "rows": result.rows,
        "problem_count": result.problem_count,
        "problems": [[p.line, p.reason] for p in result.problems],
    }


def _import_customers(payload: dict, progress: Callable[[int, int], None]) -> dict:
    from portal.services.imports import ImportRejected, import_customers

    incident = db.session.get(Incident, payload["incident_id"])
    path = Path(payload["path"])
    try:
        result = import_customers(
            incident,
            path,
            actor=payload["actor"],
            progress=lambda rows: progress(rows, payload.get("rows", 0)),
        )
    except ImportRejected as exc:
        return {"rejected": True, "problem_count": exc.report.problem_count}
    finally:
        path.unlink(missing_ok=True)  # the upload held personal data: gone once used
    return {
        "rows": result.rows,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "exposures_added": result.exposures_added,
    }


def _send_notices(payload: dict, progress: Callable[[int, int], None]) -> dict:
    from portal.services.notices import queue_notices

    incident = db.session.get(Incident, payload["incident_id"])
    count = queue_notices(
        incident, actor=payload["actor"], progress=lambda n: progress(n, payload.get("total", 0))
    )
    return {"queued": count}


def _notify_update(payload: dict, progress: Callable[[int, int], None]) -> dict:
    from portal.services.updates import notify_affected

    sent = notify_affected(payload["update_id"], progress=progress)
    return {"queued": sent}


HANDLERS: dict[str, Callable[[dict, Callable[[int, int], None]], dict]] = {
    "validate_import": _validate_import,
    "import_customers": _import_customers,
    "send_notices": _send_notices,
    "notify_update": _notify_update,
}
