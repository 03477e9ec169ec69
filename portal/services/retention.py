"""Retention: what the portal keeps about finished things, and for how long (DATA-05).

Each period is a setting (`*_RETENTION_TTL`, README "Retention"). Past it, a row is deleted:
- an outbox message that left the queue (sent, failed for good, expired): its body is already
  gone (emptied when it left); the row still names a recipient;
- a one-time code challenge that was used or has expired (never less than the verification lock
  window, whose failure count is read from recent challenges);
- a customer or staff session that ended (signed out, revoked, or past its idle limit), and any
  act a staff session kept while its sender proved who they were, once past KEPT_ACT_TTL
  (counted with the sessions: it is part of one, and ends with it).

Run by `portal retention run`, or as the background job "retention" (a scheduler submits it,
e.g. daily). Safe to run at any time and to run twice: it deletes only what is past its date,
in batches, each kept as it is done.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select

from portal import clock, unit_of_work
from portal.extensions import db
from portal.models import Challenge, KeptAct, LoginSession, OutboxMessage, StaffSession
from portal.models.audit import Actor
from portal.models.staff import KEPT_ACT_TTL
from portal.services import audit
from portal.services.background import Progress, job

BATCH = 1000


def _delete_in_batches(model, condition, *, keep_batches: bool) -> int:
    """Delete the rows of model matching condition, BATCH at a time; return how many."""
    total = 0
    while True:
        ids = list(db.session.scalars(select(model.id).where(condition).limit(BATCH)))
        if not ids:
            return total
        db.session.execute(
            delete(model).where(model.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
        total += len(ids)
        if keep_batches:
            # Each batch is kept as it is done: a long first run neither holds locks for long
            # nor starts over after a crash.
            unit_of_work.checkpoint()


def _cutoffs(now: datetime) -> dict[str, datetime]:
    config = current_app.config
    # A challenge is also the verification lock's memory: never delete one still inside it.
    challenges = max(config["CHALLENGE_RETENTION_TTL"], config["VERIFY_LOCK_WINDOW_TTL"])
    return {
        "messages": now - config["SENT_MESSAGE_RETENTION_TTL"],
        "challenges": now - challenges,
        "sessions": now - config["ENDED_SESSION_RETENTION_TTL"],
    }


def run(*, actor: str = Actor.JOBS, keep_batches: bool = False) -> dict[str, int]:
    """Delete what is past its retention period; return the counts per kind (audited)."""
    now = clock.now()
    cut = _cutoffs(now)
    counts = {
        "messages": _delete_in_batches(
            OutboxMessage,
            OutboxMessage.status.in_(("sent", "failed", "expired"))
            & (OutboxMessage.next_attempt_at < cut["messages"])
            & or_(OutboxMessage.sent_at.is_(None), OutboxMessage.sent_at < cut["messages"]),
            keep_batches=keep_batches,
        ),
        "challenges": _delete_in_batches(
            Challenge,
            (Challenge.created_at < cut["challenges"])
            & (Challenge.consumed_at.is_not(None) | (Challenge.expires_at < now)),
            keep_batches=keep_batches,
        ),
    }
    # A kept act holds personal data: gone as soon as nobody can finish it any more (and before
    # the sessions it belongs to).
    sessions = _delete_in_batches(
        KeptAct, KeptAct.created_at < now - KEPT_ACT_TTL, keep_batches=keep_batches
    )
    for model in (LoginSession, StaffSession):
        # Ended: revoked, or unused for the whole period (far past any idle limit, so a row
        # that old can never sign anyone in again).
        sessions += _delete_in_batches(
            model,
            (model.revoked_at < cut["sessions"]) | (model.last_seen_at < cut["sessions"]),
            keep_batches=keep_batches,
        )
    counts["sessions"] = sessions
    audit.record("retention.ran", actor=actor, subject_type="retention", details=counts)
    db.session.flush()
    return counts


def periods() -> dict[str, timedelta]:
    """The configured periods, for the command's report."""
    config = current_app.config
    return {
        "messages": config["SENT_MESSAGE_RETENTION_TTL"],
        "challenges": max(config["CHALLENGE_RETENTION_TTL"], config["VERIFY_LOCK_WINDOW_TTL"]),
        "sessions": config["ENDED_SESSION_RETENTION_TTL"],
    }


@job("retention")
def retention_job(payload: dict, progress: Progress) -> dict:
    """Job: the retention run (one transaction: the job's end commits it)."""
    counts = run(actor=Actor.JOBS)
    progress(1, 1)
    return counts
