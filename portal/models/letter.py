"""Printed letters: the paper copy of a notice, for a mail house to print and post."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime
from portal.models.customer import new_public_id

# Why a person gets paper: the incident requires postal notice and they did not agree to email;
# no email on file; their notice email failed for good; an agent asked for one.
LETTER_REASONS = ("postal_notice", "no_email", "bounced", "agent")


class Letter(Base):
    """One letter per person and incident. A row with no produced_at is a letter due (an agent's
    mark is such a row); build fills the batch file and page count; mark-mailed the date."""

    __tablename__ = "letter"
    __table_args__ = (
        UniqueConstraint("incident_id", "customer_id", name="uq_letter_once"),
        CheckConstraint(
            "reason IN ('postal_notice', 'no_email', 'bounced', 'agent')", name="reason"
        ),
        Index("ix_letter_incident_produced", "incident_id", "produced_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The id printed in the mail house's manifest: opaque, so the file reveals no row count.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notice.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(16))
    batch_file: Mapped[str | None] = mapped_column(String(200))
    page_count: Mapped[int | None] = mapped_column()
    produced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mailed_on: Mapped[date | None] = mapped_column()
    # Who asked for it when reason is 'agent' (an audit actor string, no personal data).
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
