"""The support desk: the agents' queue, working a case, and cases an agent opens or links."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_case_reply, compose_help_reply
from portal.models import AuditEvent, Case, Customer, StaffMember
from portal.models.audit import staff_actor
from portal.models.case import CaseStatus, MessageKind
from portal.services import audit, outbox, tokens
from portal.services.cases import (
    RESPONSE_TARGETS,
    STAFF_TOPICS,
    STATUS_LABELS,
    CaseError,
    add_message,
    check_text,
    contact_of,
    new_case,
)
from portal.unit_of_work import write_is_the_point
from portal.validation import is_email

PAGE_SIZE = 25


class Forbidden(Exception):
    """This staff member may not touch this case (recorded as an authorization failure)."""


@dataclass(frozen=True)
class Queue:
    cases: list[Case]
    page: int
    pages: int
    total: int


def _visible(staff: StaffMember):
    """Agents see their own cases and unassigned ones; admins and support leads see every case."""
    if staff.has_role("admin") or staff.has_role("support_lead"):
        return True
    return or_(Case.assignee_id.is_(None), Case.assignee_id == staff.id)


def queue(
    staff: StaffMember,
    *,
    status: str = "",
    topic: str = "",
    assignee: str = "",
    older_than_hours: int | None = None,
    page: int = 1,
) -> Queue:
    """The queue, soonest due first; filters are ignored unless they are known values."""
    query = select(Case).where(_visible(staff))
    if status in tuple(CaseStatus):
        query = query.where(Case.status == status)
    else:
        query = query.where(Case.status != CaseStatus.RESOLVED)
    if topic in RESPONSE_TARGETS:
        query = query.where(Case.topic == topic)
    if assignee == "me":
        query = query.where(Case.assignee_id == staff.id)
    elif assignee == "nobody":
        query = query.where(Case.assignee_id.is_(None))
    if older_than_hours:
        query = query.where(Case.created_at <= clock.now() - timedelta(hours=older_than_hours))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    cases = db.session.scalars(
        query.order_by(Case.due_at, Case.id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    return Queue(list(cases), page, pages, total)


def cases_for_staff(staff: StaffMember, customer: Customer) -> list[Case]:
    """A customer's cases as this staff member may see them (another agent's case is theirs)."""
    return list(
        db.session.scalars(
            select(Case)
            .where(Case.customer_id == customer.id, _visible(staff))
            .order_by(Case.created_at.desc())
        )
    )


def is_overdue(case: Case) -> bool:
    return case.status != CaseStatus.RESOLVED and case.due_at < clock.now()


def staff_case(staff: StaffMember, public_id: str) -> Case:
    """A case this staff member may work; Forbidden (audited) for someone else's."""
    case = db.session.scalar(select(Case).where(Case.public_id == public_id))
    if case is None:
        raise CaseError("No such case.")
    # Recorded on a GET too, on purpose: a refusal, and every staff look at a customer's data.
    write_is_the_point(AuditEvent)
    sees_all = staff.has_role("admin") or staff.has_role("support_lead")
    if not sees_all and case.assignee_id not in (None, staff.id):
        audit.record(
            "authorization.denied",
            actor=staff_actor(staff),
            subject_type="case",
            subject_id=public_id,
            outcome="failure",
            details={"reason": "assigned to another agent"},
        )
        raise Forbidden()  # the view answers 403; the edge commits the record with it
    audit.record("case.viewed", actor=staff_actor(staff), subject_type="case", subject_id=public_id)
    return case


def add_event(case: Case, staff: StaffMember, text: str) -> None:
    """A line of the case's history (staff see it, the customer does not)."""
    add_message(case, MessageKind.EVENT, text, staff)


def claim(staff: StaffMember, case: Case) -> None:
    case.assignee_id = staff.id
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.OPEN
    add_event(case, staff, f"Claimed by {staff.email}")
    audit.record(
        "case.claimed",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.flush()


def reply(staff: StaffMember, case: Case, body: str) -> None:
    """An answer the customer sees; they get a message that holds no content."""
    add_message(case, MessageKind.REPLY, check_text(body), staff)
    if case.assignee_id is None:
        case.assignee_id = staff.id
    case.status = CaseStatus.WAITING
    audit.record(
        "case.replied",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
    )
    if case.customer is None:
        _tell_help_writer(case)
        db.session.flush()
        return
    address = _reply_address(case)
    if address:
        outbox.queue_message(
            compose_case_reply,
            to=address,
            locale=case.customer.locale,
            dedupe_key=f"case-reply:{case.public_id}:{secrets.token_hex(8)}",
        )
    db.session.flush()


def _reply_address(case: Case) -> str | None:
    return case.customer.email if case.customer is not None else None


def _tell_help_writer(case: Case) -> None:
    """Someone not signed in gets a link to this one conversation, by the contact they gave.

    A fresh nonce per answer: only the newest link works, so a link left in an old message or
    a forwarded one stops opening the case. The message says only that there is an answer.
    """
    contact = contact_of(case) or {}
    address = contact.get("contact", "")
    if not address:
        return
    case.help_link_nonce = secrets.token_urlsafe(16)
    link = tokens.link(tokens.Purpose.HELP_CASE, case.public_id, case.help_link_nonce)
    ttl = tokens.lifetime(tokens.Purpose.HELP_CASE)
    locale = contact.get("locale") or "en"
    outbox.queue_message(
        compose_help_reply,
        to=address,
        locale=locale,
        dedupe_key=f"help-reply:{case.public_id}:{case.help_link_nonce}",
        sms=not is_email(address),
        expires_at=clock.now() + ttl,  # a link that arrives after it expired only confuses
        link=link,
        days=ttl.days,
    )


def note(staff: StaffMember, case: Case, body: str) -> None:
    """An internal note: the customer never sees it."""
    add_message(case, MessageKind.NOTE, check_text(body), staff)
    audit.record(
        "case.noted",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.flush()


def set_status(staff: StaffMember, case: Case, status: str) -> None:
    if status not in tuple(CaseStatus):
        raise CaseError("Unknown status.")
    if status != case.status:
        with force_locale("en"):  # the history is kept in one language, in words
            before, after = STATUS_LABELS[case.status], STATUS_LABELS[status]
            add_event(case, staff, f"Status: {before} → {after}")
        case.status = status
        audit.record(
            "case.status_changed",
            actor=staff_actor(staff),
            subject_type="case",
            subject_id=case.public_id,
            details={"status": status},
        )
    db.session.flush()


# --- cases an agent starts or attaches to a customer ---


def open_case_for(staff: StaffMember, customer: Customer, topic: str, body: str) -> Case:
    """A case opened on the customer's behalf (they called): theirs, assigned to this agent.

    What the agent writes is an internal note; the customer sees the case and the replies.
    """
    if topic not in STAFF_TOPICS:
        raise CaseError(_("Choose what the case is about."))
    body = check_text(body)
    case = new_case(topic, customer.id, unverified=False)
    case.assignee_id = staff.id
    case.status = CaseStatus.OPEN
    add_event(case, staff, f"Opened on the customer's behalf by {staff.email}")
    add_message(case, MessageKind.NOTE, body, staff)
    audit.record(
        "case.opened",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
        details={"topic": topic, "customer": customer.public_id},
    )
    db.session.flush()
    return case


def check_reason(reason: str) -> str:
    """The reason an agent gives for an act on a customer (it is recorded), or CaseError."""
    reason = (reason or "").strip()
    if len(reason) < 5:
        raise CaseError(_("Give the reason for this action (it is recorded)."))
    return reason[:200]


def link_case(
    staff: StaffMember, case: Case, customer: Customer, reason: str, *, identity_checked: bool
) -> None:
    """Make an unverified request the customer's, after the agent checked who wrote it.

    From then on it is an ordinary case of theirs: the tools work on it, replies go to the
    address on file, and the link mailed to the writer stops opening it (the thread may now
    hold what only the customer should read).
    """
    if case.customer_id is not None:
        raise CaseError(_("This case already belongs to a customer."))
    if not identity_checked:
        raise CaseError(_("Confirm that you checked who they are before linking."))
    reason = check_reason(reason)
    case.customer_id = customer.id
    case.customer = customer
    case.unverified = False
    case.help_link_nonce = None
    add_event(
        case, staff, f"Linked to customer {customer.external_id} after an identity check: {reason}"
    )
    audit.record(
        "case.linked",
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"case": case.public_id, "reason": reason},
    )
    db.session.flush()
