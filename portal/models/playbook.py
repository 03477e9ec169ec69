"""The response team's record of an incident: playbook tasks, findings, remediation actions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, Translated, UTCDateTime

TASK_STATUSES = ("open", "done", "not_needed")


class PlaybookTask(Base):
    """What was recorded about one task of the playbook for one incident. A task nobody has
    touched has no row: it is open, with the template's owner and due time (so every incident,
    old or new, has the whole playbook without a copy per incident)."""

    __tablename__ = "playbook_task"
    __table_args__ = (
        UniqueConstraint("incident_id", "task_id", name="uq_playbook_task_once"),
        CheckConstraint("status IN ('open', 'done', 'not_needed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(64))  # an id from the playbook template
    status: Mapped[str] = mapped_column(String(16), default="open")
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Finding(Base):
    """A root-cause finding of the investigation (a vulnerability, what the access logs show)."""

    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_incident", "incident_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RemediationAction(Translated, Base):
    """An enhanced measure taken after the incident, with an owner and dates. Marked public,
    its text (per language) is shown to customers under "What we are doing" once legal has
    approved exactly that text (portal.services.approvals, subject 'remediation')."""

    __tablename__ = "remediation_action"
    translated_fields = ("public_text",)
    __table_args__ = (Index("ix_remediation_action_incident", "incident_id", "public"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))  # the team's own words, never shown outside
    owner: Mapped[str] = mapped_column(String(32))  # a staff role
    due_on: Mapped[date | None] = mapped_column(Date)
    done_on: Mapped[date | None] = mapped_column(Date)
    created_on: Mapped[date] = mapped_column(Date)
    public: Mapped[bool] = mapped_column(default=False, server_default=false())
    public_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    # sha256 of what customers would see now (texts and done date): an approval covers the
    # action only while its pinned hash equals this, so any change hides it until approved again.
    public_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
