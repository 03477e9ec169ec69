"""The audit trail: append-only, each event chained to the one before by an HMAC."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Base, UTCDateTime

if TYPE_CHECKING:
    from portal.models.customer import Customer
    from portal.models.staff import StaffMember


class Actor(StrEnum):
    """Who did an act, as the audit trail names them when there is nobody's id to give.

    A known person is `customer:<public id>`, `staff:<public id>` or `cli:<user>`, made by the
    functions below; the admin's audit filter matches on these prefixes.
    """

    VISITOR = "visitor"  # not signed in and not claiming to be anyone (a help request)
    CUSTOMER = "customer"  # someone with a customer's link, address or letter, not yet verified
    STAFF = "staff"  # someone trying to sign in as a staff member
    OUTBOX = "system:outbox"  # the outbox worker
    JOBS = "system:jobs"  # the background jobs
    PROTECTION = "system:protection"  # the activation-code pool


def customer_actor(customer: Customer) -> str:
    """A customer who proved who they are."""
    return f"{Actor.CUSTOMER}:{customer.public_id}"


def staff_actor(member: StaffMember) -> str:
    """A signed-in staff member."""
    return f"{Actor.STAFF}:{member.public_id}"


def cli_actor(user: str) -> str:
    """An operator at the command line, by their login name."""
    return f"cli:{user}"


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Set by the service, not the database: the time is part of what the chain signs.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str] = mapped_column(String(32), default="")
    subject_id: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    details: Mapped[str] = mapped_column(Text, default="{}")
    # The client's address as the app sees it through ProxyFix ("" outside a request); chained.
    client_addr: Mapped[str] = mapped_column(String(45), default="", server_default="")
    # Which audit key signed this event ("legacy": the key once derived from the signing key;
    # those events keep their original hash input, without key id or client address).
    key_id: Mapped[str] = mapped_column(String(16), server_default="legacy")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
