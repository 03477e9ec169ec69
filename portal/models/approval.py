"""Four-eyes approval: what one person drafted and another approved, pinned exactly."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime

APPROVAL_SUBJECTS = ("campaign", "letters", "update", "correction", "remediation")
APPROVAL_STATES = ("pending", "approved", "superseded", "overridden")


def _among(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Approval(Base):
    __tablename__ = "approval"
    __table_args__ = (
        CheckConstraint(_among("subject", APPROVAL_SUBJECTS), name="subject"),
        CheckConstraint(_among("state", APPROVAL_STATES), name="state"),
        Index("ix_approval_subject_ref", "subject", "subject_ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(16))
    # The string id of the thing approved (an update's id, a campaign's template key, ...).
    subject_ref: Mapped[str] = mapped_column(String(64))
    # Exactly what was put up for approval (canonical JSON): the text of every language
    # version and the recipient counts per language and region. Approval covers this, nothing
    # else: a change makes a different hash and needs approving again.
    pinned: Mapped[str] = mapped_column(Text)
    pinned_hash: Mapped[str] = mapped_column(String(64))
    # Staff are disabled, never deleted; SET NULL only so a purge cannot be blocked by evidence.
    drafted_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_member.id", ondelete="SET NULL")
    )
    drafted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_member.id", ondelete="SET NULL")
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    # An emergency override: the ids of the two different admins ("3,7"; the first asked, the
    # second confirmed) and the reason they gave.
    override_by_ids: Mapped[str | None] = mapped_column(String(40))
    override_reason: Mapped[str | None] = mapped_column(Text)
