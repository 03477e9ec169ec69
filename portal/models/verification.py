"""Proving who you are: one-time-code challenges and the server-side sessions they open."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.customer import Customer
from portal.models.sealed import Sealed, SealedField


class Challenge(Base):
    """One one-time-code attempt, bound to the browser that started it."""

    __tablename__ = "challenge"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email')", name="channel"),
        Index("ix_challenge_customer_created", "customer_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Kept in the browser's session: the code only works together with this id.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notice.id", ondelete="SET NULL"))
    purpose: Mapped[str] = mapped_column(String(16), default="verify")
    channel: Mapped[str] = mapped_column(String(8))
    # What a typed code is checked against: an HMAC, compared in constant time.
    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The code itself, sealed, only so that "resend" can send the same code again; wiped as
    # soon as the challenge is used, dead or locked.
    code_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    code = SealedField("code_sealed")
    tries: Mapped[int] = mapped_column(default=0)
    resends: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    customer: Mapped[Customer] = relationship()


class LoginSession(Base):
    """A server-side session: the cookie holds a random token, the table only its digest."""

    __tablename__ = "login_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customer.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the customer last proved themselves with a code (sensitive acts ask for a fresh one).
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str] = mapped_column(String(200), default="")

    customer: Mapped[Customer] = relationship()


class KnownBrowser(Base):
    """A browser a customer has signed in from: the digest of a random cookie it keeps, so that
    a sign-in from any other browser can be told to them (AUTH-08)."""

    __tablename__ = "known_browser"
    __table_args__ = (
        UniqueConstraint("customer_id", "cookie_digest", name="uq_known_browser_once"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    # Only the digest: a read of the table cannot be replayed as a "known" cookie.
    cookie_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
