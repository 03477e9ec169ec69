"""Customers and what of theirs was exposed. Personal values are sealed at rest."""

from __future__ import annotations

import secrets
import time
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.sealed import BlindIndex, Sealed, SealedField
from portal.validation import normalise_email, normalise_name, normalise_phone


def new_public_id() -> str:
    """An opaque id: 96 random bits behind a 32-bit clock prefix.

    The random part makes it impossible to guess; the prefix makes new ids sort after old ones,
    so a million-row import appends to the unique index instead of scattering writes over it.
    """
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


def new_public_ids(count: int) -> list[str]:
    """count ids as new_public_id() makes them, the random parts read from the OS at once."""
    prefix = f"{int(time.time()) & 0xFFFFFFFF:08x}"
    hexes = secrets.token_hex(12 * count)
    return [prefix + hexes[i : i + 24] for i in range(0, 24 * count, 24)]


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name_sealed: Mapped[bytes] = mapped_column(Sealed())
    # None: the organisation has no email for the person (a postal address reaches them).
    email_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    # Keyed digest of the normalised address: find a customer by email without storing it.
    email_index: Mapped[bytes | None] = mapped_column(
        BlindIndex("email", "email", normalise_email), index=True
    )
    phone_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    # Keyed digests of the normalised full name and phone, for the support desk's lookup.
    # Null on rows imported before the indexes existed, until they are imported again (or a
    # key rotation passes over them).
    name_index: Mapped[bytes | None] = mapped_column(
        BlindIndex("name", "name", normalise_name), index=True
    )
    phone_index: Mapped[bytes | None] = mapped_column(
        BlindIndex("phone", "phone", normalise_phone), index=True
    )
    locale: Mapped[str] = mapped_column(String(16), default="en")
    # When the customer picked their language on the portal: a later import keeps their choice.
    locale_chosen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    region: Mapped[str] = mapped_column(String(8), default="")
    # Whether the person agreed to be notified by email (the import's optional `email_consent`);
    # None: the organisation did not say. HIPAA notice goes by post without it.
    email_consent: Mapped[bool | None] = mapped_column()
    # The postal address for a printed letter (country and state come from `region`); sealed
    # like every other contact point: an address list of the affected is itself a leak.
    address_line1_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    address_line2_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    city_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    postal_code_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
    # Set when too many wrong codes were typed; only support can lift it.
    verification_locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An optional authenticator app for later visits: the seed is sealed, the last accepted
    # time step is kept so that a code cannot be replayed.
    totp_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column()
    # The password of the customer's account with the organisation: argon2id, never anything
    # that could be reversed.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # First time the customer opened their plan (a figure for the response team's funnel).
    plan_viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Wrong authenticator codes at sign-in, counted over a day like wrong one-time codes.
    totp_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    totp_failed_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # After a few wrong ones, the app's sign-in waits until then (the notice link and its code
    # never wait for it: anyone who knows an address can type wrong codes for it).
    totp_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    exposures: Mapped[list[Exposure]] = relationship(back_populates="customer")

    # Setting one seals it for this row and refreshes its blind index.
    name = SealedField("name_sealed")
    email = SealedField("email_sealed")
    phone = SealedField("phone_sealed")
    totp_secret = SealedField("totp_sealed")
    address_line1 = SealedField("address_line1_sealed")
    address_line2 = SealedField("address_line2_sealed")
    city = SealedField("city_sealed")
    postal_code = SealedField("postal_code_sealed")

    @property
    def seal_binding(self) -> str:
        # A new customer gets its id on first use: its sealed values are bound to it.
        if self.public_id is None:
            self.public_id = new_public_id()
        return self.public_id


class Exposure(Base):
    """Customer x incident x data class, with at most a 4-character fragment to show masked."""

    __tablename__ = "exposure"
    __seal_loads__ = ("customer",)  # its binding reads the customer's id
    __table_args__ = (
        UniqueConstraint("customer_id", "incident_id", "data_class", name="uq_exposure_once"),
        Index("ix_exposure_incident_customer", "incident_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    data_class: Mapped[str] = mapped_column(String(32))
    # Even a last-four is sealed: last four SSN digits are used as a secret elsewhere.
    fragment_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    customer: Mapped[Customer] = relationship(back_populates="exposures")

    fragment = SealedField("fragment_sealed")

    @property
    def seal_binding(self) -> str:
        return self.binding(self.customer.public_id, self.incident_id, self.data_class)

    @staticmethod
    def binding(customer_public_id: str, incident_id: int, data_class: str) -> str:
        """The row identity a fragment is sealed to (also for bulk writes without the ORM)."""
        return f"{customer_public_id}.{incident_id}.{data_class}"
