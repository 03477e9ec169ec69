"""The one queue of work for the worker: what must not run in a request (a large import, a notice
campaign, a new-link request's lookup), with its progress and result."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime
from portal.models.sealed import Sealed, SealedField


class Job(Base):
    __tablename__ = "background_job"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        # The worker's question: what is queued and due (or running too long), oldest first.
        Index("ix_background_job_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    # The job's arguments, sealed: an import job names a file of personal data.
    payload_sealed: Mapped[bytes] = mapped_column(Sealed())
    status: Mapped[str] = mapped_column(String(16), default="queued")
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    result: Mapped[str] = mapped_column(Text, default="")  # a short report, nothing personal
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Runs so far; a job whose handler allows retries waits until next_attempt_at after a failure.
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payload = SealedField("payload_sealed", "json")
