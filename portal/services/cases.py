"""The support desk: cases, their threads, the agents' queue and the agents' tools."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from portal import clock
from portal.extensions import db
from portal.mail.compose import (
    compose_case_reply,
    compose_help_reply,
    compose_security_notice,
)
from portal.models import AuditEvent, Case, CaseMessage, Challenge, Customer, Notice, StaffMember
from portal.models.audit import Actor, customer_actor, staff_actor
from portal.models.case import CaseStatus, CaseTopic, MessageKind
from portal.services import assisted_sign_in, audit, outbox, reference_codes, tokens
from portal.unit_of_work import write_is_the_point
from portal.validation import (
    Invalid,
    email_address,
    is_email,
    phone_number,
)

# How soon a person should hear back, by topic: someone whose identity is being stolen first.
RESPONSE_TARGETS = {
    CaseTopic.IDENTITY_THEFT: timedelta(hours=4),
    # Someone waiting by the phone: as soon as a stolen identity.
    CaseTopic.CALLBACK: timedelta(hours=4),
    CaseTopic.CANNOT_VERIFY: timedelta(hours=8),
    CaseTopic.CANNOT_FINISH: timedelta(hours=24),
    CaseTopic.MY_DATA: timedelta(hours=48),
    CaseTopic.OTHER: timedelta(hours=72),
}
CUSTOMER_TOPICS = (
    CaseTopic.CANNOT_FINISH,
    CaseTopic.IDENTITY_THEFT,
    CaseTopic.MY_DATA,
    CaseTopic.CALLBACK,
    CaseTopic.OTHER,
)
HELP_TOPICS = (CaseTopic.CANNOT_VERIFY, CaseTopic.CALLBACK)
# What an agent may open on a customer's behalf (a callback is asked for by the customer).
STAFF_TOPICS = (
    CaseTopic.CANNOT_VERIFY,
    CaseTopic.CANNOT_FINISH,
    CaseTopic.IDENTITY_THEFT,
    CaseTopic.MY_DATA,
    CaseTopic.OTHER,
)
CASE_STATUSES_LABELS = [
    (CaseStatus.NEW, _l("New")),
    (CaseStatus.OPEN, _l("Open")),
    (CaseStatus.WAITING, _l("Waiting on customer")),
    (CaseStatus.RESOLVED, _l("Resolved")),
]
STATUS_LABELS = dict(CASE_STATUSES_LABELS)  # what staff read instead of the stored code
TOPIC_LABELS = {
    CaseTopic.CANNOT_FINISH: _l("I can't finish something"),
    CaseTopic.IDENTITY_THEFT: _l("I think my identity was stolen"),
    CaseTopic.MY_DATA: _l("A question about my data"),
    CaseTopic.CANNOT_VERIFY: _l("I can't verify"),
    CaseTopic.CALLBACK: _l("Please call me back"),
    CaseTopic.OTHER: _l("Something else"),
}
# What the customer sees of a case's thread; staff see every kind.
CUSTOMER_KINDS = (MessageKind.CUSTOMER, MessageKind.REPLY)
PAGE_SIZE = 25


class CaseError(Exception):
    """Something to tell the person, in words; nothing was changed. `field` names the form
    field it is about, when there is one."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class Forbidden(Exception):
    """This staff member may not touch this case (recorded as an authorization failure)."""


class HelpLinkInvalid(CaseError):
    """A help-case link that is tampered, replaced, or no longer for someone signed out."""


class HelpLinkExpired(HelpLinkInvalid):
    """A genuine help-case link, older than its lifetime."""


def _message(
    case: Case, kind: MessageKind, body: str, staff: StaffMember | None = None
) -> CaseMessage:
    message = CaseMessage(
        case=case, kind=kind, staff_id=staff.id if staff else None, created_at=clock.now()
    )
    message.body = body  # sealed to the case
    db.session.add(message)
    case.updated_at = clock.now()
    return message


def message_text(case: Case, message: CaseMessage) -> str:
    return message.body


def _check_text(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise CaseError(_("Please write a message."))
    if len(body) > 5000:
        raise CaseError(_("Please keep the message under 5,000 characters."))
    return body


def _new_case(topic: str, customer_id: int | None, unverified: bool) -> Case:
    now = clock.now()
    case = Case(
        public_id=secrets.token_hex(16),
        customer_id=customer_id,
        topic=topic,
        status=CaseStatus.NEW,
        unverified=unverified,
        created_at=now,
        updated_at=now,
        due_at=now + RESPONSE_TARGETS[topic],
    )
    db.session.add(case)
    db.session.flush()
    return case


def _callback_details(phone: str, window: str) -> dict:
    """The number to call and when, checked: an E.164 number and a short free-text window."""
    window = " ".join((window or "").split())
    try:
        phone = phone_number(phone or "")
    except Invalid:
        raise CaseError(
            _("Give the number to call with + and the country code, like +14155550123."),
            field="callback_phone",
        ) from None
    if not window or len(window) > 200:
        raise CaseError(
            _("Tell us when we may call you (for example: weekdays 9 to 11 am)."),
            field="callback_window",
        )
    return {"phone": phone, "window": window}


def _set_callback(case: Case, details: dict) -> None:
    case.callback = details


def callback_of(case: Case) -> dict | None:
    """{"phone", "window"} of a callback request, or None."""
    return case.callback


# --- the customer's side --------------------------------------------------------------------


def open_case(
    customer: Customer,
    topic: str,
    body: str,
    *,
    callback_phone: str = "",
    callback_window: str = "",
) -> Case:
    if topic not in CUSTOMER_TOPICS:
        raise CaseError(_("Please choose what your question is about."))
    body = _check_text(body)
    callback = (
        _callback_details(callback_phone or customer.phone or "", callback_window)
        if topic == CaseTopic.CALLBACK
        else None
    )
    case = _new_case(topic, customer.id, unverified=False)
    if callback:
        _set_callback(case, callback)
    _message(case, MessageKind.CUSTOMER, body)
    audit.record(
        "case.opened",
        actor=customer_actor(customer),
        subject_type="case",
        subject_id=case.public_id,
        details={"topic": topic},
    )
    db.session.flush()
    return case


def help_request(
    *,
    name: str,
    contact: str,
    reference: str,
    body: str,
    topic: str = CaseTopic.CANNOT_VERIFY,
    callback_phone: str = "",
    callback_window: str = "",
    locale: str = "en",
) -> None:
    """'I can't verify' or 'call me back' from someone not signed in: an unverified case.

    The same answer whoever asks; nothing looked up.
    """
    name, contact = (name or "").strip(), (contact or "").strip()
    if topic not in HELP_TOPICS:
        raise CaseError(_("Please choose what your question is about."))
    if not name or len(name) > 200:
        raise CaseError(_("Please tell us your name."), field="name")
    try:
        contact = email_address(contact) if "@" in contact else phone_number(contact)
    except Invalid:
        raise CaseError(
            _("Give an email address, or a phone number starting with + and the country code."),
            field="contact",
        ) from None
    body = _check_text(body)
    callback = None
    if topic == CaseTopic.CALLBACK:
        # The number they gave as their contact is the one to call, unless they gave another.
        fallback = contact if not is_email(contact) else ""
        callback = _callback_details(callback_phone or fallback, callback_window)
    case = _new_case(topic, None, unverified=True)
    case.contact = {
        "name": name,
        "contact": contact,
        "reference": reference_codes.normalise(reference),
        "locale": locale,
    }
    if callback:
        _set_callback(case, callback)
    _message(case, MessageKind.CUSTOMER, body)
    audit.record(
        "case.help_requested",
        actor=Actor.VISITOR,
        subject_type="case",
        subject_id=case.public_id,
        details={"topic": topic},
    )
    db.session.flush()


def contact_of(case: Case) -> dict | None:
    return case.contact


def customer_cases(customer: Customer) -> list[Case]:
    return list(
        db.session.scalars(
            select(Case).where(Case.customer_id == customer.id).order_by(Case.created_at.desc())
        )
    )


def cases_for_staff(staff: StaffMember, customer: Customer) -> list[Case]:
    """A customer's cases as this staff member may see them (another agent's case is theirs)."""
    return list(
        db.session.scalars(
            select(Case)
            .where(Case.customer_id == customer.id, _visible(staff))
            .order_by(Case.created_at.desc())
        )
    )


def customer_case(customer: Customer, public_id: str) -> Case | None:
    """Only the customer's own case; another's is simply not found."""
    return db.session.scalar(
        select(Case).where(Case.public_id == public_id, Case.customer_id == customer.id)
    )


@dataclass(frozen=True)
class ThreadItem:
    message: CaseMessage
    text: str


def thread(case: Case, *, for_staff: bool) -> list[ThreadItem]:
    """The case's messages in order; internal notes and history only for staff."""
    kinds = tuple(MessageKind) if for_staff else CUSTOMER_KINDS
    messages = db.session.scalars(
        select(CaseMessage)
        .where(CaseMessage.case_id == case.id, CaseMessage.kind.in_(kinds))
        .order_by(CaseMessage.created_at, CaseMessage.id)
    )
    return [ThreadItem(m, message_text(case, m)) for m in messages]


def customer_reply(customer: Customer, case: Case, body: str) -> None:
    _message(case, MessageKind.CUSTOMER, _check_text(body))
    if case.status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
        case.status = CaseStatus.OPEN
    audit.record(
        "case.customer_replied",
        actor=customer_actor(customer),
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.flush()


# --- the writer of a help request, through the link in our answer ------------------------


def help_case(token: str) -> Case:
    """The one case a help-case link opens; HelpLinkInvalid or HelpLinkExpired otherwise.

    A GET may call this freely: reading spends nothing (mail scanners open links).
    """
    try:
        public_id, nonce = tokens.load(tokens.Purpose.HELP_CASE, token)
    except tokens.ExpiredToken as exc:
        raise HelpLinkExpired(
            _("This link has expired. Write to us again and we will send a new one.")
        ) from exc
    except tokens.InvalidToken as exc:
        raise HelpLinkInvalid(_("This link does not work.")) from exc
    case = db.session.scalar(select(Case).where(Case.public_id == public_id))
    # Only the newest link to a case works, and only while the case belongs to nobody: once an
    # agent has linked it to a customer, it is read behind that customer's sign-in.
    if (
        case is None
        or case.customer_id is not None
        or not case.help_link_nonce
        or not hmac.compare_digest(str(nonce), case.help_link_nonce)
    ):
        raise HelpLinkInvalid(
            _(
                "This link does not work any more: a newer one was sent, or the conversation "
                "is now on your personal page. Use the newest email from us, or sign in."
            )
        )
    return case


def help_case_reply(token: str, body: str) -> Case:
    """The writer answers through the link; the case comes back to the agents."""
    case = help_case(token)
    _message(case, MessageKind.CUSTOMER, _check_text(body))
    if case.status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
        case.status = CaseStatus.OPEN
    audit.record(
        "case.help_replied", actor=Actor.VISITOR, subject_type="case", subject_id=case.public_id
    )
    db.session.flush()
    return case


# --- the agents' side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    cases: list[Case]
    page: int
    pages: int
    total: int


def _visible(staff: StaffMember):
    """Agents see their own cases and unassigned ones; admins see every case."""
    if staff.role == "admin":
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


def is_overdue(case: Case) -> bool:
    return case.status != CaseStatus.RESOLVED and case.due_at < clock.now()


def staff_case(staff: StaffMember, public_id: str) -> Case:
    """A case this staff member may work; Forbidden (audited) for someone else's."""
    case = db.session.scalar(select(Case).where(Case.public_id == public_id))
    if case is None:
        raise CaseError("No such case.")
    # Recorded on a GET too, on purpose: a refusal, and every staff look at a customer's data.
    write_is_the_point(AuditEvent)
    if staff.role != "admin" and case.assignee_id not in (None, staff.id):
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


def _event(case: Case, staff: StaffMember, text: str) -> None:
    _message(case, MessageKind.EVENT, text, staff)


def claim(staff: StaffMember, case: Case) -> None:
    case.assignee_id = staff.id
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.OPEN
    _event(case, staff, f"Claimed by {staff.email}")
    audit.record(
        "case.claimed",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.flush()


def reply(staff: StaffMember, case: Case, body: str) -> None:
    """An answer the customer sees; they get a message that holds no content."""
    _message(case, MessageKind.REPLY, _check_text(body), staff)
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
    _message(case, MessageKind.NOTE, _check_text(body), staff)
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
            _event(case, staff, f"Status: {before} → {after}")
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
    body = _check_text(body)
    case = _new_case(topic, customer.id, unverified=False)
    case.assignee_id = staff.id
    case.status = CaseStatus.OPEN
    _event(case, staff, f"Opened on the customer's behalf by {staff.email}")
    _message(case, MessageKind.NOTE, body, staff)
    audit.record(
        "case.opened",
        actor=staff_actor(staff),
        subject_type="case",
        subject_id=case.public_id,
        details={"topic": topic, "customer": customer.public_id},
    )
    db.session.flush()
    return case


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
    reason = _reason(reason)
    case.customer_id = customer.id
    case.customer = customer
    case.unverified = False
    case.help_link_nonce = None
    _event(
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


# --- agent tools on a customer, from one of their cases or from their record ---
# (re-authenticated by the view, with a reason, audited)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < 5:
        raise CaseError(_("Give the reason for this action (it is recorded)."))
    return reason[:200]


def _target(subject: Case | Customer, reason: str) -> tuple[Customer, Case | None, str]:
    """The customer a tool acts on, the case it was used from (if any), and the reason."""
    if isinstance(subject, Customer):
        customer, case = subject, None
    else:
        case, customer = subject, subject.customer
        if customer is None:
            raise CaseError(_("This case has no verified customer; link it to one first."))
    return customer, case, _reason(reason)


def _tool_audit(
    staff: StaffMember, customer: Customer, case: Case | None, action: str, reason: str, **details
) -> None:
    audit.record(
        action,
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"case": case.public_id if case else "", "reason": reason, **details},
    )
    if case is not None:
        _event(case, staff, f"{action} — {reason}")


def resend_link(staff: StaffMember, subject: Case | Customer, reason: str) -> None:
    """A fresh notice link to the address on file; every older link stops working."""
    customer, case, reason = _target(subject, reason)
    notices = db.session.scalars(select(Notice).where(Notice.customer_id == customer.id)).all()
    if not notices:
        raise CaseError(_("This customer has no notice to resend."))
    from portal.services.verification import reissue_link

    for notice in notices:
        reissue_link(notice, customer, reason="agent-link")
    _tool_audit(staff, customer, case, "agent.link_resent", reason)
    db.session.flush()


def clear_lock(staff: StaffMember, subject: Case | Customer, reason: str) -> None:
    """Lift the code lock and forgive the day's failures."""
    customer, case, reason = _target(subject, reason)
    customer.verification_locked_at = None
    customer.totp_failures = 0
    # Failures of the last day are forgiven with the lock, or the next typo would re-lock.
    for challenge in db.session.scalars(
        select(Challenge).where(Challenge.customer_id == customer.id, Challenge.tries > 0)
    ):
        challenge.tries = 0
        challenge.consumed_at = challenge.consumed_at or clock.now()
    _tool_audit(staff, customer, case, "agent.lock_cleared", reason)
    db.session.flush()


def confirm_identity(staff: StaffMember, subject: Case | Customer, reason: str) -> None:
    """After checking who they are by phone: mail a link that signs them in once, for an hour.

    The agent never signs in as the customer; the link goes only to the address on file.
    """
    customer, case, reason = _target(subject, reason)
    assisted_sign_in.send_link(customer)
    _tool_audit(staff, customer, case, "agent.identity_confirmed", reason)
    db.session.flush()


def correct_contact(
    staff: StaffMember,
    subject: Case | Customer,
    reason: str,
    *,
    email: str = "",
    phone: str = "",
) -> None:
    """Correct the email or phone on file; the old and the new address are both told."""
    customer, case, reason = _target(subject, reason)
    email, phone = (email or "").strip(), (phone or "").strip()
    if not email and not phone:
        raise CaseError(_("Give the corrected email or phone."))
    try:
        email = email_address(email) if email else ""
    except Invalid:
        raise CaseError(_("That email address is not valid.")) from None
    try:
        phone = phone_number(phone) if phone else ""
    except Invalid:
        raise CaseError(_("A phone number is in E.164 form, like +14155550123.")) from None
    old_email = customer.email
    changed = []
    if email and email != old_email:
        customer.email = email  # its blind index follows
        changed.append("email")
    if phone and phone != customer.phone:
        customer.phone = phone
        changed.append("phone")
    if not changed:
        raise CaseError(_("That is already what we have on file."))
    customer.updated_at = clock.now()
    for address in {old_email, customer.email}:
        outbox.queue_message(
            compose_security_notice,
            to=address,
            locale=customer.locale,
            dedupe_key=f"contact-changed:{customer.public_id}:{secrets.token_hex(8)}",
            what=_l("The contact details on your account were changed by our support team."),
        )
    _tool_audit(staff, customer, case, "agent.contact_corrected", reason, changed=changed)
    db.session.flush()
