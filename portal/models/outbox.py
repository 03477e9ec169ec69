"""The outbox: messages written in the same transaction as the change they report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime
from portal.models.sealed import Sealed, SealedField

# Messages only: work for the worker is a Job (portal.services.background).
OUTBOX_KINDS = ("email", "sms", "webhook")
OUTBOX_STATUSES = ("queued", "sent", "failed", "expired")


class OutboxTemplate(Base):
    """A message rendered once for many recipients, with slots for what differs per person.

    A notice campaign writes one per variant (language, data types, which of them show a masked
    fragment); each of its messages holds only its own values, sealed, and the worker fills the
    slots when it sends (portal.mail.mime). The text holds no personal data, but it is sealed as
    every message body is: what a message says is no operator's reading.
    """

    __tablename__ = "outbox_template"
    __seal_prefix__ = "outbox_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of everything below: the same rendering is one row, however many runs make it.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    sender: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(16))
    text_sealed: Mapped[bytes] = mapped_column(Sealed())
    html_sealed: Mapped[bytes] = mapped_column(Sealed())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    text = SealedField("text_sealed")
    html = SealedField("html_sealed")

    @property
    def seal_binding(self) -> str:
        return self.digest


class OutboxMessage(Base):
    __tablename__ = "outbox_message"
    __seal_prefix__ = "outbox"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'sms', 'webhook')", name="kind"),
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'expired')", name="status"),
        # The worker's only question: what is queued and due, oldest first.
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        # What cannot wait (one-time codes, sign-in links: a message with an expiry) is claimed
        # first, by this index of those alone, so that a million notices queued ahead of it do
        # not hold a code past its expiry.
        Index(
            "ix_outbox_message_urgent",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'queued' AND expires_at IS NOT NULL"),
            sqlite_where=text("status = 'queued' AND expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # One message per purpose, ever: a retried command cannot queue a second copy.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(255))
    # Recipient and body are sealed (they hold links and personal data); the subject never
    # carries personal data, so operators can read the queue.
    recipient_sealed: Mapped[bytes] = mapped_column(Sealed())
    subject: Mapped[str] = mapped_column(String(200), default="")
    body_sealed: Mapped[bytes] = mapped_column(Sealed())
    locale: Mapped[str] = mapped_column(String(16), default="en")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A message that has not left by then is dropped (one-time codes must never arrive late).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    notice_id: Mapped[int | None] = mapped_column(
        ForeignKey("notice.id", ondelete="SET NULL"), index=True
    )
    # Set: the body holds this message's own values (JSON), filled into the template when it is
    # sent; unset: the body is the message's bytes.
    template_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_template.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Once a message leaves the queue (sent, failed for good, or expired) its body is emptied: it
    # held a code, a link or personal data, and nothing needs it again. What remains is this
    # digest of the exact bytes, to match a message someone forwards to us to its row.
    body_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    body_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    recipient = SealedField("recipient_sealed")
    # An email's bytes as sent (or a templated email's values), an SMS's text, a webhook's
    # JSON: read as bytes.
    body = SealedField("body_sealed", "bytes")

    @property
    def seal_binding(self) -> str:
        return self.dedupe_key  # unique and set before anything is sealed
