"""Incidents: one breach, its dates and the text of its notice."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, String, Text, false, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, Translated, UTCDateTime

INCIDENT_STATUSES = ("investigating", "notifying", "monitoring", "closed")
# The organisation's place under HIPAA decides its duties there, not the kind of data exposed:
# a covered entity notifies individuals, HHS and the media; a business associate tells the
# covered entity; anyone else has no HIPAA duty at all.
HIPAA_ROLES = ("none", "covered_entity", "business_associate")


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
        CheckConstraint(
            "hipaa_role IN ('none', 'covered_entity', 'business_associate')", name="hipaa_role"
        ),
        CheckConstraint(
            "occurred_to IS NULL OR occurred_on IS NULL OR occurred_to >= occurred_on",
            name="occurred_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="investigating")
    # The breach's first known day, and its last when it ran over a range (Cal. Civ. Code
    # 1798.82(d)(2)(C) asks for "the date, estimated date, or date range of the breach").
    occurred_on: Mapped[date | None] = mapped_column(Date)
    occurred_to: Mapped[date | None] = mapped_column(Date)
    discovered_on: Mapped[date] = mapped_column(Date)
    contained_on: Mapped[date | None] = mapped_column(Date)
    # When the organisation decided the incident is material (starts the SEC clock), if ever.
    materiality_on: Mapped[date | None] = mapped_column(Date)
    # Whether notice was delayed because law enforcement asked (1798.82(d)(2)(D)).
    delayed_by_law_enforcement: Mapped[bool] = mapped_column(default=False, server_default=false())
    hipaa_role: Mapped[str] = mapped_column(String(24), default="none", server_default="none")
    # The incident's notice must go by post (HIPAA: first-class mail unless the person agreed
    # to email); the letters are built from the people this marks.
    postal_notice: Mapped[bool] = mapped_column(default=False, server_default=false())
    what_happened: Mapped[str] = mapped_column(Text, default="")
    what_we_are_doing: Mapped[str] = mapped_column(Text, default="")
    more_information: Mapped[str] = mapped_column(Text, default="", server_default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    contact_hours: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    # The assessment's scope in the team's words (the counts come from the import).
    affected_systems: Mapped[str] = mapped_column(Text, default="", server_default="")
    affected_data_sets: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
