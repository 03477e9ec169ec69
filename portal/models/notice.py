"""Notices: the notification of one customer about one incident."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.customer import Customer
from portal.models.incident import Incident


def new_link_nonce() -> str:
    """A fresh nonce for the access link: replacing it revokes every link issued before."""
    return secrets.token_urlsafe(16)


class Notice(Base):
    __tablename__ = "notice"
    __table_args__ = (UniqueConstraint("customer_id", "incident_id", name="uq_notice_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    # Printed on paper letters; an identifier, not a credential (a code still goes to the
    # contact on file), so it is stored as typed for lookup.
    reference_code: Mapped[str] = mapped_column(String(16), unique=True)
    link_nonce: Mapped[str] = mapped_column(String(32), default=new_link_nonce)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    customer: Mapped[Customer] = relationship()
    incident: Mapped[Incident] = relationship()
