"""The audit trail: record security-relevant acts in an HMAC-chained, append-only table."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from flask import current_app, g, has_request_context
from sqlalchemy import select, text

from portal import clock
from portal.extensions import db
from portal.models import AuditEvent

GENESIS = "0" * 64
# One arbitrary constant: the PostgreSQL advisory lock that serialises appends to the chain.
_CHAIN_LOCK = 0x7A0D17

_process_run_id = secrets.token_hex(8)


def current_request_id() -> str:
    """The id of the request (or, outside a request, of this command run)."""
    if has_request_context():
        return getattr(g, "request_id", "") or ""
    return f"run-{_process_run_id}"


def _chain_keys() -> list[bytes]:
    """The chain key is derived from the signing key, which never lives in the database."""
    config = current_app.config
    secrets_ = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    return [
        hmac.new(s.encode(), b"portal audit chain v1", hashlib.sha256).digest() for s in secrets_
    ]


def _message(event: AuditEvent) -> bytes:
    fields = [
        event.prev_hash,
        event.occurred_at.isoformat(),
        event.actor,
        event.action,
        event.subject_type,
        event.subject_id,
        event.request_id,
        event.outcome,
        event.details,
    ]
    return "\x1f".join(fields).encode()


def _digest(key: bytes, event: AuditEvent) -> str:
    return hmac.new(key, _message(event), hashlib.sha256).hexdigest()


def record(
    action: str,
    *,
    actor: str,
    subject_type: str = "",
    subject_id: str | int = "",
    outcome: str = "success",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the chain in the current transaction. Details must hold no secrets."""
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        # Appends from concurrent transactions must not fork the chain.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    prev = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    event = AuditEvent(
        occurred_at=clock.now(),
        actor=actor[:120],
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        request_id=current_request_id(),
        outcome=outcome,
        details=json.dumps(details or {}, sort_keys=True, separators=(",", ":")),
        prev_hash=prev or GENESIS,
    )
    event.hash = _digest(_chain_keys()[0], event)
    session.add(event)
    session.flush()
    return event


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""


def verify_chain(batch_size: int = 5000) -> ChainReport:
    """Walk the chain in order and name the first event whose link or signature is wrong."""
    keys = _chain_keys()
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        events = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > last_id)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not events:
            return ChainReport(checked)
        for event in events:
            if event.prev_hash != prev:
                return ChainReport(checked, event.id, "does not follow the event before it")
            if not any(hmac.compare_digest(_digest(k, event), event.hash) for k in keys):
                return ChainReport(checked, event.id, "its contents were changed")
            prev = event.hash
            checked += 1
            last_id = event.id
        db.session.expunge_all()


@dataclass
class Page:
    events: list[AuditEvent]
    page: int
    pages: int


def search(
    *,
    actor: str = "",
    action: str = "",
    subject: str = "",
    since=None,
    until=None,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Events matching the filters, newest first (text filters match the start of a value)."""
    from sqlalchemy import func

    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor.startswith(actor, autoescape=True))
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if subject:
        query = query.where(AuditEvent.subject_id.startswith(subject, autoescape=True))
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    events = db.session.scalars(
        query.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(list(events), page, pages)
