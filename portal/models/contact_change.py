"""A change of a customer's email or phone asked for by staff, held until it is safe to apply."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.case import Case
from portal.models.customer import Customer
from portal.models.sealed import Sealed, SealedField
from portal.models.staff import StaffMember


class ContactChange(Base):
    """One field (email or phone) to change, from the request to applied or cancelled.

    Staff correcting where messages go could otherwise hand the account to whoever owns the new
    address, so the new value stays here, not on the customer, until the new address has proved
    itself with a code AND either a second staff member approved or the waiting time passed;
    the old address is told, and can cancel.
    """

    __tablename__ = "contact_change"
    __table_args__ = (
        CheckConstraint("field IN ('email', 'phone')", name="field"),
        Index("ix_contact_change_customer_requested", "customer_id", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("support_case.id", ondelete="SET NULL"), index=True
    )
    field: Mapped[str] = mapped_column(String(8))
    # The new address, sealed to this row: it is personal data and not yet the customer's.
    value_sealed: Mapped[bytes] = mapped_column(Sealed())
    # The code sent to the new address, as an HMAC only (compared in constant time).
    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    code_tries: Mapped[int] = mapped_column(default=0)
    # The nonces in the links mailed for this change: to confirm (new address) and to cancel
    # (old address). Each token carries one; a token for one cannot do the other.
    confirm_nonce: Mapped[str] = mapped_column(String(32))
    cancel_nonce: Mapped[str] = mapped_column(String(32))
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_member.id", ondelete="SET NULL")
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    proved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_member.id", ondelete="SET NULL")
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "customer" (the old address said it was not them) or a staff member's public id.
    cancelled_by: Mapped[str | None] = mapped_column(String(40))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer: Mapped[Customer] = relationship()
    case: Mapped[Case | None] = relationship()
    requested_by: Mapped[StaffMember | None] = relationship(foreign_keys=[requested_by_id])
    approved_by: Mapped[StaffMember | None] = relationship(foreign_keys=[approved_by_id])

    value = SealedField("value_sealed")
