"""Which steps of their plan a customer has marked done."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime


class GuidanceProgress(Base):
    __tablename__ = "guidance_progress"
    __table_args__ = (UniqueConstraint("customer_id", "step_id", name="uq_guidance_progress_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    done_at: Mapped[datetime] = mapped_column(UTCDateTime)
