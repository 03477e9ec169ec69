"""Customer sessions, held on the server: a cookie is only a random key to a row here."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import Customer, LoginSession
from portal.models.audit import customer_actor
from portal.services import audit
from portal.unit_of_work import write_is_the_point

# Writing last_seen on every click would make every page a write; a minute of slack is harmless
# against a 15-minute idle limit.
_TOUCH_EVERY = timedelta(minutes=1)


def _digest(token: str) -> bytes:
    # Only the digest is stored: a read of the table cannot be replayed as a cookie.
    return hashlib.sha256(token.encode()).digest()


def open_session(customer: Customer, *, verified_at: datetime, user_agent: str = "") -> str:
    """Start a session for a customer who just proved themselves; return the cookie's token."""
    token = secrets.token_urlsafe(32)  # 256 bits
    now = clock.now()
    db.session.add(
        LoginSession(
            token_digest=_digest(token),
            customer_id=customer.id,
            created_at=now,
            last_seen_at=now,
            verified_at=verified_at,
            user_agent=user_agent[:200],
        )
    )
    audit.record(
        "session.started",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    db.session.flush()
    return token


def load_session(token: str | None) -> LoginSession | None:
    """The live session for this token, or None when unknown, ended, idle or too old."""
    if not token:
        return None
    row = db.session.scalar(select(LoginSession).where(LoginSession.token_digest == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    config = current_app.config
    now = clock.now()
    if now - row.last_seen_at > config["CUSTOMER_IDLE_TTL"]:
        return None
    if now - row.created_at > config["CUSTOMER_MAX_TTL"]:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        # Written on any page, GETs too: the point is the idle timeout, which counts from here.
        write_is_the_point(LoginSession.last_seen_at)
        row.last_seen_at = now
        db.session.flush()
    return row


def is_fresh(row: LoginSession, within: timedelta | None = None) -> bool:
    """Did this session prove itself with a code within the window (the step-up lifetime unless
    given), as sensitive acts need?"""
    return clock.now() - row.verified_at <= (within or current_app.config["STEP_UP_TTL"])


def end_session(token: str | None) -> None:
    """Log out: the row is revoked, so a copy of the cookie is worthless from now on."""
    row = load_session(token)
    if row is None:
        return
    row.revoked_at = clock.now()
    audit.record(
        "session.ended",
        actor=customer_actor(row.customer),
        subject_type="customer",
        subject_id=row.customer.public_id,
    )
    db.session.flush()


def end_all_sessions(customer_id: int) -> None:
    """End every session of a customer (after a password change, say)."""
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.customer_id == customer_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
