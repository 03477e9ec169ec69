"""Cases and their threads, and the customer's side of them: signed in, or through a help link.

The agents' side is in support_desk.py, their tools on a customer in agent_tools.py.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Case, CaseMessage, Customer, StaffMember
from portal.models.audit import Actor, customer_actor
from portal.models.case import CaseStatus, CaseTopic, MessageKind
from portal.services import audit, reference_codes, tokens
from portal.validation import (
    INVISIBLE_EXPECTED,
    SINGLE_LINE_EXPECTED,
    Invalid,
    email_address,
    has_invisible,
    is_email,
    is_single_line,
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


class CaseError(Exception):
    """Something to tell the person, in words; nothing was changed. `field` names the form
    field it is about, when there is one."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class HelpLinkInvalid(CaseError):
    """A help-case link that is tampered, replaced, or no longer for someone signed out."""


class HelpLinkExpired(HelpLinkInvalid):
    """A genuine help-case link, older than its lifetime."""


def add_message(
    case: Case, kind: MessageKind, body: str, staff: StaffMember | None = None
) -> CaseMessage:
    """A message in the case's thread (sealed); the case counts as updated."""
    message = CaseMessage(
        case=case, kind=kind, staff_id=staff.id if staff else None, created_at=clock.now()
    )
    message.body = body  # sealed to the case
    db.session.add(message)
    case.updated_at = clock.now()
    return message


def message_text(case: Case, message: CaseMessage) -> str:
    return message.body


def check_text(body: str) -> str:
    """A message's text, trimmed; CaseError when it is empty or too long."""
    body = (body or "").strip()
    if not body:
        raise CaseError(_("Please write a message."))
    if len(body) > 5000:
        raise CaseError(_("Please keep the message under 5,000 characters."))
    return body


def new_case(topic: str, customer_id: int | None, unverified: bool) -> Case:
    """A new case, due by its topic's response target."""
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
    body = check_text(body)
    callback = (
        _callback_details(callback_phone or customer.phone or "", callback_window)
        if topic == CaseTopic.CALLBACK
        else None
    )
    case = new_case(topic, customer.id, unverified=False)
    if callback:
        _set_callback(case, callback)
    add_message(case, MessageKind.CUSTOMER, body)
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
    # The name is shown to the agents who decide whose record this request is: a direction
    # override or an invisible character would make it read as someone else's name.
    if has_invisible(name):
        raise CaseError(str(INVISIBLE_EXPECTED), field="name")
    if not is_single_line(name):
        raise CaseError(str(SINGLE_LINE_EXPECTED), field="name")
    try:
        contact = email_address(contact) if "@" in contact else phone_number(contact)
    except Invalid:
        raise CaseError(
            _("Give an email address, or a phone number starting with + and the country code."),
            field="contact",
        ) from None
    body = check_text(body)
    callback = None
    if topic == CaseTopic.CALLBACK:
        # The number they gave as their contact is the one to call, unless they gave another.
        fallback = contact if not is_email(contact) else ""
        callback = _callback_details(callback_phone or fallback, callback_window)
    case = new_case(topic, None, unverified=True)
    case.contact = {
        "name": name,
        "contact": contact,
        "reference": reference_codes.normalise(reference),
        "locale": locale,
    }
    if callback:
        _set_callback(case, callback)
    add_message(case, MessageKind.CUSTOMER, body)
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
    add_message(case, MessageKind.CUSTOMER, check_text(body))
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
    add_message(case, MessageKind.CUSTOMER, check_text(body))
    if case.status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
        case.status = CaseStatus.OPEN
    audit.record(
        "case.help_replied", actor=Actor.VISITOR, subject_type="case", subject_id=case.public_id
    )
    db.session.flush()
    return case
