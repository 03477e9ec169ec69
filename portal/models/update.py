"""Updates published about an incident, shown newest first to everyone it touched."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, Translated, UTCDateTime


class IncidentUpdate(Translated, Base):
    __tablename__ = "incident_update"
    translated_fields = ("title", "body")
    __table_args__ = (Index("ix_incident_update_published", "incident_id", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    # None while a draft; customers only ever see published updates.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A correction is a new update pointing at the one it corrects: what people already read
    # is never silently rewritten.
    corrects_id: Mapped[int | None] = mapped_column(
        ForeignKey("incident_update.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
