"""Incidents: one breach, its dates and the text of its notice."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, Translated, UTCDateTime

INCIDENT_STATUSES = ("investigating", "notifying", "monitoring", "closed")


class Incident(Translated, Base):
    __tablename__ = "incident"
    translated_fields = (
        "title",
        "what_happened",
        "what_we_are_doing",
        "more_information",
        "contact_hours",
    )
    __table_args__ = (
        CheckConstraint(
            "status IN ('investigating', 'notifying', 'monitoring', 'closed')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="investigating")
    occurred_on: Mapped[date | None] = mapped_column(Date)
    discovered_on: Mapped[date] = mapped_column(Date)
    contained_on: Mapped[date | None] = mapped_column(Date)
    # When the organisation decided the incident is material (starts the SEC clock), if ever.
    materiality_on: Mapped[date | None] = mapped_column(Date)
    what_happened: Mapped[str] = mapped_column(Text, default="")
    what_we_are_doing: Mapped[str] = mapped_column(Text, default="")
    more_information: Mapped[str] = mapped_column(Text, default="", server_default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    contact_hours: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
