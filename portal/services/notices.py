"""Notices: queue one personal 'Notice of Data Breach' per affected customer, exactly once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import partial

from sqlalchemy import and_, func, select
from sqlalchemy.orm import selectinload

from portal import clock, unit_of_work
from portal.extensions import db
from portal.mail.compose import compose_notice
from portal.models import Customer, Exposure, Incident, Notice, OutboxMessage
from portal.services import audit, guidance, outbox, reference_codes, runs, tokens
from portal.services.background import Later, Progress, job

BATCH_SIZE = 500


def _unnotified_customer_ids(incident_id: int, limit: int) -> list[int]:
    query = (
        select(Exposure.customer_id)
        .outerjoin(
            Notice,
            and_(Notice.customer_id == Exposure.customer_id, Notice.incident_id == incident_id),
        )
        .where(Exposure.incident_id == incident_id, Notice.id.is_(None))
        .group_by(Exposure.customer_id)
        .order_by(Exposure.customer_id)
        .limit(limit)
    )
    return list(db.session.scalars(query))


def _fresh_reference_codes(count: int) -> list[str]:
    """Codes not yet used by any notice (a collision is rare, but a code must be unique)."""
    while True:
        codes = {reference_codes.generate() for _ in range(count)}
        taken = set(
            db.session.scalars(
                select(Notice.reference_code).where(Notice.reference_code.in_(codes))
            )
        )
        codes -= taken
        if len(codes) == count:
            return list(codes)


def queue_notices(
    incident: Incident,
    *,
    actor: str,
    batch_size: int = BATCH_SIZE,
    progress=None,
) -> int:
    """Create a Notice and its outbox message for every affected customer not yet notified.

    Each batch commits its notices together with their messages, so a notice is never marked
    queued without its message, nor a message queued twice: running it again sends nothing new.
    Another run for the same incident under way: raise runs.Busy before queueing anything.
    """
    # Two runs at once would pick the same customers and insert their notices twice (the loser
    # died on uq_notice_once half-way). Held on a connection of its own: batches commit.
    with runs.held(runs.NOTICES, incident.id):
        return _queue_notices(incident, actor=actor, batch_size=batch_size, progress=progress)


def _queue_notices(incident: Incident, *, actor: str, batch_size: int, progress) -> int:
    queued = 0
    while True:
        customer_ids = _unnotified_customer_ids(incident.id, batch_size)
        if not customer_ids:
            break
        customers = db.session.scalars(
            select(Customer)
            .where(Customer.id.in_(customer_ids))
            .options(selectinload(Customer.exposures))
        ).all()
        codes = _fresh_reference_codes(len(customers))
        now = clock.now()
        notices = [
            Notice(
                public_id=secrets.token_urlsafe(16),
                customer_id=customer.id,
                incident_id=incident.id,
                reference_code=code,
                queued_at=now,
            )
            for customer, code in zip(customers, codes, strict=True)
        ]
        db.session.add_all(notices)
        db.session.flush()  # one multi-row INSERT gives every notice its id
        for customer, notice in zip(customers, notices, strict=True):
            exposures = [
                (e.data_class, e.fragment)
                for e in customer.exposures
                if e.incident_id == incident.id
            ]
            outbox.queue_message(
                compose_notice,
                to=customer.email,
                locale=customer.locale,
                dedupe_key=f"notice:{notice.public_id}",
                notice_id=notice.id,
                incident=incident,
                exposures=exposures,
                link=tokens.link(tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce),
                reference_code=reference_codes.display(notice.reference_code),
                steps=partial(guidance.step_titles, {key for key, _f in exposures}),
            )
        audit.record(
            "notices.queued",
            actor=actor,
            subject_type="incident",
            subject_id=incident.slug,
            details={"count": len(customers)},
        )
        # Each batch is kept as it finishes, its notices with their messages, so a rerun carries
        # on from here. After the commit every row is clean, and the session holds clean rows
        # only weakly: memory stays flat over a million notices without detaching the caller's
        # objects.
        if not queued:
            # Workers start on the first batch while the rest is queued: they claim by the due
            # index only once the planner knows the queue is no longer empty.
            outbox.after_bulk_queue()
        unit_of_work.checkpoint()
        queued += len(customers)
        if progress is not None:
            progress(queued)
    if queued:
        outbox.after_bulk_queue()
    return queued


@job("send_notices")
def _send_notices_job(payload: dict, progress: Progress) -> dict:
    """Job: the campaign an admin started from the console."""
    incident = db.session.get(Incident, payload["incident_id"])
    try:
        count = queue_notices(
            incident,
            actor=payload["actor"],
            progress=lambda n: progress(n, payload.get("total", 0)),
        )
    except runs.Busy:
        # Another campaign run for this incident: this job goes after it, and then queues what is
        # left (the worker is not parked in a wait meanwhile).
        raise Later() from None
    return {"queued": count}


@dataclass(frozen=True)
class Campaign:
    affected: int
    notified: int
    sent: int
    failed: int
    opened: int
    verified: int


def affected_count(incident_id: int):
    """A scalar subquery: how many customers the incident touched."""
    return (
        select(func.count(func.distinct(Exposure.customer_id)))
        .where(Exposure.incident_id == incident_id)
        .scalar_subquery()
    )


def notice_count(incident_id: int, condition):
    """A scalar subquery: how many of the incident's notices meet the condition."""
    return (
        select(func.count())
        .select_from(Notice)
        .where(Notice.incident_id == incident_id, condition)
        .scalar_subquery()
    )


def campaign(incident: Incident) -> Campaign:
    """Where the notices of an incident stand (one aggregate query)."""

    def notices(condition):
        return notice_count(incident.id, condition)

    row = db.session.execute(
        select(
            affected_count(incident.id),
            notices(Notice.id.is_not(None)),
            notices(Notice.sent_at.is_not(None)),
            select(func.count())
            .select_from(OutboxMessage)
            .join(Notice, Notice.id == OutboxMessage.notice_id)
            .where(Notice.incident_id == incident.id, OutboxMessage.status == "failed")
            .scalar_subquery(),
            notices(Notice.opened_at.is_not(None)),
            notices(Notice.verified_at.is_not(None)),
        )
    ).one()
    return Campaign(*(int(v or 0) for v in row))


def requeue_failed(incident: Incident, *, actor: str) -> int:
    """Try again every notice message of this incident that failed (an address since fixed)."""
    outcome = outbox.requeue_failed(actor=actor, notice_of_incident=incident.id)
    audit.record(
        "notices.requeued",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"count": outcome.requeued},
    )
    return outcome.requeued


def data_classes_involved(incident: Incident) -> list[tuple[str, int]]:
    """The data classes the imports say were involved, most customers first (one query)."""
    rows = db.session.execute(
        select(Exposure.data_class, func.count())
        .where(Exposure.incident_id == incident.id)
        .group_by(Exposure.data_class)
        .order_by(func.count().desc(), Exposure.data_class)
    )
    return [(key, count) for key, count in rows]
