"""Escalations: a case and its thread (customer messages, agent replies, internal notes)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Base, UTCDateTime
from portal.models.customer import Customer
from portal.models.sealed import Sealed, SealedField
from portal.models.staff import StaffMember


class CaseTopic(StrEnum):
    """What a case is about (the stored value)."""

    CANNOT_FINISH = "cannot_finish"
    IDENTITY_THEFT = "identity_theft"
    MY_DATA = "my_data"
    CANNOT_VERIFY = "cannot_verify"
    CALLBACK = "callback"
    OTHER = "other"


class CaseStatus(StrEnum):
    """Where a case stands in the queue (the stored value)."""

    NEW = "new"
    OPEN = "open"
    WAITING = "waiting"  # on the customer: an agent replied
    RESOLVED = "resolved"


class MessageKind(StrEnum):
    """Who wrote a message in a case's thread, and so who may read it."""

    CUSTOMER = "customer"  # from the customer, or the writer of a help request
    REPLY = "reply"  # an agent's answer the customer sees
    NOTE = "note"  # internal, never shown to the customer
    EVENT = "event"  # the case's history (claimed, status changed...), for staff


def _one_of(column: str, values: type[StrEnum]) -> str:
    """A CHECK constraint's text naming every value of the enum, in its order."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class Case(Base):
    __tablename__ = "support_case"
    __seal_prefix__ = "case"
    __table_args__ = (
        CheckConstraint(_one_of("topic", CaseTopic), name="topic"),
        CheckConstraint(_one_of("status", CaseStatus), name="status"),
        Index("ix_support_case_queue", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # None for an "I can't verify" request from someone not signed in.
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer.id", ondelete="SET NULL"), index=True
    )
    topic: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.NEW)
    # Unverified: whoever wrote has not proved who they are (agents see it flagged).
    unverified: Mapped[bool] = mapped_column(default=False)
    # For unverified requests: what they told us (name, contact, reference), sealed.
    contact_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    # For a callback request: the number to call and when (sealed together).
    callback_sealed: Mapped[bytes | None] = mapped_column(Sealed())
    # The nonce in the newest link mailed to the writer of an unverified request; replacing it
    # retires every older link to the case.
    help_link_nonce: Mapped[str | None] = mapped_column(String(32))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_member.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    customer: Mapped[Customer | None] = relationship()
    assignee: Mapped[StaffMember | None] = relationship()

    # What an unverified writer told us ({"name", "contact", "reference", "locale"}), and a
    # callback's {"phone", "window"}.
    contact = SealedField("contact_sealed", "json")
    callback = SealedField("callback_sealed", "json")


class CaseMessage(Base):
    __tablename__ = "case_message"
    # Sealed to the case, as "case.message.<case>": a message moved to another case fails to open.
    __seal_prefix__ = "case"
    __seal_loads__ = ("case",)  # its binding reads the case's id
    __table_args__ = (CheckConstraint(_one_of("kind", MessageKind), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("support_case.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # a MessageKind
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_member.id", ondelete="SET NULL"))
    body_sealed: Mapped[bytes] = mapped_column(Sealed("message"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    staff: Mapped[StaffMember | None] = relationship()
    case: Mapped[Case] = relationship()

    body = SealedField("body_sealed")

    @property
    def seal_binding(self) -> str:
        return self.case.public_id
