"""A legal duty to notify, as done: the catalogue says what applies, this records the doing."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime


class Obligation(Base):
    __tablename__ = "obligation"
    __table_args__ = (UniqueConstraint("incident_id", "duty_id", name="uq_obligation_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    duty_id: Mapped[str] = mapped_column(String(64))  # an id from the catalogue
    done_on: Mapped[date] = mapped_column(Date)
    how: Mapped[str] = mapped_column(String(500))  # reference, channel, filing number
    done_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
