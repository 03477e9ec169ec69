"""The identity-protection product offered after an incident, its code pool, and who enrolled."""

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
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, Translated, UTCDateTime
from portal.models.incident import Incident
from portal.models.sealed import BlindIndex, Sealed, SealedField


class ProtectionOffer(Translated, Base):
    __tablename__ = "protection_offer"
    translated_fields = ("includes",)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), unique=True
    )
    provider_name: Mapped[str] = mapped_column(String(120))
    product_name: Mapped[str] = mapped_column(String(120))
    includes: Mapped[str] = mapped_column(Text, default="")  # one item per line
    term_months: Mapped[int] = mapped_column(default=12)
    enroll_by: Mapped[date] = mapped_column(Date)
    enroll_url: Mapped[str] = mapped_column(String(300))
    enroll_phone: Mapped[str] = mapped_column(String(40), default="")
    terms_url: Mapped[str] = mapped_column(String(300), default="")
    # Data class keys that make a customer eligible, comma separated; empty: everyone affected.
    eligible_classes: Mapped[str] = mapped_column(String(500), default="")
    minors_product: Mapped[str] = mapped_column(String(120), default="")
    # Regions the offer is open to, comma separated: a country ("US") or a subdivision
    # ("US-CA"); empty: everywhere. A US credit-monitoring product means nothing to a reader in
    # Germany, so it can be limited to where it works.
    regions: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    incident: Mapped[Incident] = relationship()

    @property
    def included(self) -> list[str]:
        return [line.strip() for line in self.includes.splitlines() if line.strip()]

    @property
    def eligible_keys(self) -> set[str]:
        return {k.strip() for k in self.eligible_classes.split(",") if k.strip()}

    @property
    def region_list(self) -> list[str]:
        """The regions the offer is open to; empty: everywhere."""
        return [r.strip() for r in (self.regions or "").split(",") if r.strip()]


class ActivationCode(Base):
    """One code of the provider's pool; sealed at rest, given to one customer at most."""

    __tablename__ = "activation_code"
    __table_args__ = (
        UniqueConstraint("offer_id", "code_index", name="uq_activation_code_once"),
        # The database itself refuses a second code for the same customer.
        UniqueConstraint("offer_id", "customer_id", name="uq_activation_code_customer"),
        Index("ix_activation_code_free", "offer_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("protection_offer.id", ondelete="CASCADE"))
    code_sealed: Mapped[bytes] = mapped_column(Sealed())
    # A keyed digest: duplicates are found without any code in plaintext.
    code_index: Mapped[bytes] = mapped_column(BlindIndex("code", "activation-code.{row.offer_id}"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    code = SealedField("code_sealed")

    @property
    def seal_binding(self) -> str:
        # The pool has no public ids: a code is bound to its offer and its own digest.
        return f"{self.offer_id}.{self.code_index.hex()}"


class Enrollment(Base):
    """A customer's enrollment: with a code, or waiting in line for one."""

    __tablename__ = "enrollment"
    __table_args__ = (
        UniqueConstraint("offer_id", "customer_id", name="uq_enrollment_once"),
        CheckConstraint("status IN ('enrolled', 'waiting')", name="status"),
        Index("ix_enrollment_waiting", "offer_id", "status", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("protection_offer.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("activation_code.id", ondelete="SET NULL")
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
