"""The support desk: cases, their threads, the agents' queue and the agents' tools."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, or_, select

from portal.extensions import db, vault
from portal.i18n import language_for
from portal.mail.compose import compose_case_reply, compose_security_notice
from portal.models import Case, CaseMessage, Challenge, Customer, Notice, StaffMember
from portal.models.base import utcnow
from portal.services import audit, outbox, reference_codes
from portal.validation import is_email, normalise_email

# How soon a person should hear back, by topic: someone whose identity is being stolen first.
RESPONSE_TARGETS = {
    "identity_theft": timedelta(hours=4),
    "cannot_verify": timedelta(hours=8),
    "cannot_finish": timedelta(hours=24),
    "my_data": timedelta(hours=48),
    "other": timedelta(hours=72),
}
CUSTOMER_TOPICS = ("cannot_finish", "identity_theft", "my_data", "other")
CASE_STATUSES_LABELS = [
    ("new", _l("New")),
    ("open", _l("Open")),
    ("waiting", _l("Waiting on customer")),
    ("resolved", _l("Resolved")),
]
TOPIC_LABELS = {
    "cannot_finish": _l("I can't finish something"),
    "identity_theft": _l("I think my identity was stolen"),
    "my_data": _l("A question about my data"),
    "cannot_verify": _l("I can't verify"),
    "other": _l("Something else"),
}
PAGE_SIZE = 25
ASSISTED_SALT = "assisted-signin-v1"
ASSISTED_TTL = timedelta(hours=1)


class CaseError(Exception):
    """Something to tell the person, in words; nothing was changed."""


class Forbidden(Exception):
    """This staff member may not touch this case (recorded as an authorization failure)."""


def _seal(case_public_id: str, text: str, part: str) -> bytes:
    return vault.seal(text, f"case.{part}.{case_public_id}")


def _open(case_public_id: str, blob: bytes, part: str) -> str:
    return vault.open(blob, f"case.{part}.{case_public_id}")


def _message(case: Case, kind: str, body: str, staff: StaffMember | None = None) -> CaseMessage:
    message = CaseMessage(
        case_id=case.id,
        kind=kind,
        staff_id=staff.id if staff else None,
        body_sealed=_seal(case.public_id, body, "message"),
        created_at=utcnow(),
    )
    db.session.add(message)
    case.updated_at = utcnow()
    return message


def message_text(case: Case, message: CaseMessage) -> str:
    return _open(case.public_id, message.body_sealed, "message")


def _check_text(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise CaseError(_("Please write a message."))
    if len(body) > 5000:
        raise CaseError(_("Please keep the message under 5,000 characters."))
    return body


def _new_case(topic: str, customer_id: int | None, unverified: bool) -> Case:
    now = utcnow()
    case = Case(
        public_id=secrets.token_hex(16),
        customer_id=customer_id,
        topic=topic,
        status="new",
        unverified=unverified,
        created_at=now,
        updated_at=now,
        due_at=now + RESPONSE_TARGETS[topic],
    )
    db.session.add(case)
    db.session.flush()
    return case


# --- the customer's side --------------------------------------------------------------------


def open_case(customer: Customer, topic: str, body: str) -> Case:
    if topic not in CUSTOMER_TOPICS:
        raise CaseError(_("Please choose what your question is about."))
    body = _check_text(body)
    case = _new_case(topic, customer.id, unverified=False)
    _message(case, "customer", body)
    audit.record(
        "case.opened",
        actor=f"customer:{customer.public_id}",
        subject_type="case",
        subject_id=case.public_id,
        details={"topic": topic},
    )
    db.session.commit()
    return case


def help_request(*, name: str, contact: str, reference: str, body: str) -> None:
    """'I can't verify': an unverified case. The same answer whoever asks; nothing looked up."""
    name, contact = (name or "").strip(), (contact or "").strip()
    if not name or len(name) > 200:
        raise CaseError(_("Please tell us your name."))
    if not (
        is_email(contact)
        or (contact.startswith("+") and contact[1:].isdigit() and 8 <= len(contact) <= 16)
    ):
        raise CaseError(
            _("Give an email address, or a phone number starting with + and the country code.")
        )
    body = _check_text(body)
    case = _new_case("cannot_verify", None, unverified=True)
    case.contact_sealed = _seal(
        case.public_id,
        json.dumps(
            {"name": name, "contact": contact, "reference": reference_codes.normalise(reference)}
        ),
        "contact",
    )
    _message(case, "customer", body)
    audit.record(
        "case.help_requested", actor="visitor", subject_type="case", subject_id=case.public_id
    )
    db.session.commit()


def contact_of(case: Case) -> dict | None:
    return (
        json.loads(_open(case.public_id, case.contact_sealed, "contact"))
        if case.contact_sealed
        else None
    )


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
    kinds = ("customer", "reply", "note", "event") if for_staff else ("customer", "reply")
    messages = db.session.scalars(
        select(CaseMessage)
        .where(CaseMessage.case_id == case.id, CaseMessage.kind.in_(kinds))
        .order_by(CaseMessage.created_at, CaseMessage.id)
    )
    return [ThreadItem(m, message_text(case, m)) for m in messages]


def customer_reply(customer: Customer, case: Case, body: str) -> None:
    _message(case, "customer", _check_text(body))
    if case.status in ("waiting", "resolved"):
        case.status = "open"
    audit.record(
        "case.customer_replied",
        actor=f"customer:{customer.public_id}",
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.commit()


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
    if status in ("new", "open", "waiting", "resolved"):
        query = query.where(Case.status == status)
    else:
        query = query.where(Case.status != "resolved")
    if topic in RESPONSE_TARGETS:
        query = query.where(Case.topic == topic)
    if assignee == "me":
        query = query.where(Case.assignee_id == staff.id)
    elif assignee == "nobody":
        query = query.where(Case.assignee_id.is_(None))
    if older_than_hours:
        query = query.where(Case.created_at <= utcnow() - timedelta(hours=older_than_hours))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    cases = db.session.scalars(
        query.order_by(Case.due_at, Case.id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    return Queue(list(cases), page, pages, total)


def is_overdue(case: Case) -> bool:
    return case.status != "resolved" and case.due_at < utcnow()


def staff_case(staff: StaffMember, public_id: str) -> Case:
    """A case this staff member may work; Forbidden (audited) for someone else's."""
    case = db.session.scalar(select(Case).where(Case.public_id == public_id))
    if case is None:
        raise CaseError("No such case.")
    if staff.role != "admin" and case.assignee_id not in (None, staff.id):
        audit.record(
            "authorization.denied",
            actor=f"staff:{staff.public_id}",
            subject_type="case",
            subject_id=public_id,
            outcome="failure",
            details={"reason": "assigned to another agent"},
        )
        db.session.commit()
        raise Forbidden()
    audit.record(
        "case.viewed", actor=f"staff:{staff.public_id}", subject_type="case", subject_id=public_id
    )  # every staff look at a customer's data is recorded
    db.session.commit()
    return case


def _event(case: Case, staff: StaffMember, text: str) -> None:
    _message(case, "event", text, staff)


def claim(staff: StaffMember, case: Case) -> None:
    case.assignee_id = staff.id
    if case.status == "new":
        case.status = "open"
    _event(case, staff, f"Claimed by {staff.email}")
    audit.record(
        "case.claimed",
        actor=f"staff:{staff.public_id}",
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.commit()


def reply(staff: StaffMember, case: Case, body: str) -> None:
    """An answer the customer sees; they get an email that holds no content."""
    _message(case, "reply", _check_text(body), staff)
    if case.assignee_id is None:
        case.assignee_id = staff.id
    case.status = "waiting"
    audit.record(
        "case.replied",
        actor=f"staff:{staff.public_id}",
        subject_type="case",
        subject_id=case.public_id,
    )
    address = _reply_address(case)
    if address:
        customer = case.customer
        with force_locale(language_for(customer.locale if customer else "en")):
            message = compose_case_reply()
        outbox.enqueue_email(
            dedupe_key=f"case-reply:{case.public_id}:{secrets.token_hex(8)}",
            recipient=address,
            subject=message.subject,
            text=message.text,
            html=message.html,
            locale=customer.locale if customer else "en",
        )
    db.session.commit()


def _reply_address(case: Case) -> str | None:
    if case.customer is not None:
        return case.customer.email
    contact = contact_of(case) or {}
    return contact.get("contact") if is_email(contact.get("contact", "")) else None


def note(staff: StaffMember, case: Case, body: str) -> None:
    """An internal note: the customer never sees it."""
    _message(case, "note", _check_text(body), staff)
    audit.record(
        "case.noted",
        actor=f"staff:{staff.public_id}",
        subject_type="case",
        subject_id=case.public_id,
    )
    db.session.commit()


def set_status(staff: StaffMember, case: Case, status: str) -> None:
    if status not in ("new", "open", "waiting", "resolved"):
        raise CaseError("Unknown status.")
    if status != case.status:
        _event(case, staff, f"Status: {case.status} → {status}")
        case.status = status
        audit.record(
            "case.status_changed",
            actor=f"staff:{staff.public_id}",
            subject_type="case",
            subject_id=case.public_id,
            details={"status": status},
        )
    db.session.commit()


# --- agent tools on the case's customer (re-authenticated, with a reason, audited) ---


def _require(case: Case, reason: str) -> Customer:
    if case.customer is None:
        raise CaseError("This case has no verified customer; link it to one first.")
    if len((reason or "").strip()) < 5:
        raise CaseError("Give the reason for this action (it is recorded).")
    return case.customer


def _tool_audit(staff: StaffMember, case: Case, action: str, reason: str, **details) -> None:
    audit.record(
        action,
        actor=f"staff:{staff.public_id}",
        subject_type="customer",
        subject_id=case.customer.public_id,
        details={"case": case.public_id, "reason": reason.strip()[:200], **details},
    )
    _event(case, staff, f"{action} — {reason.strip()[:200]}")


def resend_link(staff: StaffMember, case: Case, reason: str) -> None:
    """A fresh notice link to the address on file; every older link stops working."""
    customer = _require(case, reason)
    notices = db.session.scalars(select(Notice).where(Notice.customer_id == customer.id)).all()
    if not notices:
        raise CaseError("This customer has no notice to resend.")
    from portal.services.verification import reissue_link

    for notice in notices:
        reissue_link(notice, customer, reason="agent-link")
    _tool_audit(staff, case, "agent.link_resent", reason)
    db.session.commit()


def clear_lock(staff: StaffMember, case: Case, reason: str) -> None:
    customer = _require(case, reason)
    customer.verification_locked_at = None
    customer.totp_failures = 0
    # Failures of the last day are forgiven with the lock, or the next typo would re-lock.
    for challenge in db.session.scalars(
        select(Challenge).where(Challenge.customer_id == customer.id, Challenge.tries > 0)
    ):
        challenge.tries = 0
        challenge.consumed_at = challenge.consumed_at or utcnow()
    _tool_audit(staff, case, "agent.lock_cleared", reason)
    db.session.commit()


def _assisted_serializer() -> URLSafeTimedSerializer:
    config = current_app.config
    return URLSafeTimedSerializer(
        [*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]], salt=ASSISTED_SALT
    )


def confirm_identity(staff: StaffMember, case: Case, reason: str) -> None:
    """After checking who they are by phone: mail a link that signs them in once, for an hour.

    The agent never signs in as the customer; the link goes only to the address on file.
    """
    customer = _require(case, reason)
    from portal.services.verification import _code_digest

    nonce = secrets.token_urlsafe(24)
    challenge = Challenge(
        public_id=secrets.token_hex(16),
        customer_id=customer.id,
        purpose="assisted",
        channel="email",
        expires_at=utcnow() + ASSISTED_TTL,
        created_at=utcnow(),
    )
    challenge.code_digest = _code_digest(challenge.public_id, nonce)
    db.session.add(challenge)
    db.session.flush()
    token = _assisted_serializer().dumps([challenge.public_id, nonce])
    link = f"{current_app.config['BASE_URL']}/assisted/{token}"
    from portal.mail.compose import compose_assisted_link

    with force_locale(language_for(customer.locale)):
        message = compose_assisted_link(link=link)
    outbox.enqueue_email(
        dedupe_key=f"assisted:{challenge.public_id}",
        recipient=customer.email,
        subject=message.subject,
        text=message.text,
        html=message.html,
        locale=customer.locale,
        expires_at=challenge.expires_at,
    )
    _tool_audit(staff, case, "agent.identity_confirmed", reason)
    db.session.commit()


def use_assisted_link(token: str) -> Customer:
    """Spend an assisted sign-in link (POST only); raise CaseError when it cannot be used."""
    import hmac

    from portal.services.verification import _code_digest

    try:
        public_id, nonce = _assisted_serializer().loads(
            token, max_age=int(ASSISTED_TTL.total_seconds())
        )
    except (SignatureExpired, BadSignature, ValueError, TypeError) as exc:
        raise CaseError(_("This sign-in link does not work any more.")) from exc
    challenge = db.session.scalar(
        select(Challenge).where(Challenge.public_id == public_id, Challenge.purpose == "assisted")
    )
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= utcnow()
        or not hmac.compare_digest(_code_digest(public_id, str(nonce)), challenge.code_digest)
    ):
        raise CaseError(_("This sign-in link does not work any more."))
    challenge.consumed_at = utcnow()
    audit.record(
        "customer.verified",
        actor=f"customer:{challenge.customer.public_id}",
        subject_type="customer",
        subject_id=challenge.customer.public_id,
        details={"purpose": "assisted"},
    )
    db.session.commit()
    return challenge.customer


def check_assisted_link(token: str) -> None:
    """GET: is the link usable? Spends nothing (mail scanners open links)."""
    try:
        public_id, _nonce = _assisted_serializer().loads(
            token, max_age=int(ASSISTED_TTL.total_seconds())
        )
    except (SignatureExpired, BadSignature, ValueError, TypeError) as exc:
        raise CaseError(_("This sign-in link does not work any more.")) from exc
    challenge = db.session.scalar(select(Challenge).where(Challenge.public_id == public_id))
    if challenge is None or challenge.consumed_at is not None or challenge.expires_at <= utcnow():
        raise CaseError(_("This sign-in link does not work any more."))


def correct_contact(
    staff: StaffMember, case: Case, reason: str, *, email: str = "", phone: str = ""
) -> None:
    """Correct the email or phone on file; the old and the new address are both told."""
    customer = _require(case, reason)
    email, phone = (email or "").strip(), (phone or "").strip()
    if not email and not phone:
        raise CaseError("Give the corrected email or phone.")
    if email and not is_email(email):
        raise CaseError("That email address is not valid.")
    if phone and not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
        raise CaseError("A phone number is in E.164 form, like +14155550123.")
    old_email = customer.email
    changed = []
    if email and email != old_email:
        customer.email = email
        customer.email_index = vault.blind_index(normalise_email(email), "email")
        changed.append("email")
    if phone and phone != customer.phone:
        customer.phone = phone
        changed.append("phone")
    if not changed:
        raise CaseError("That is already what we have on file.")
    customer.updated_at = utcnow()
    with force_locale(language_for(customer.locale)):
        message = compose_security_notice(
            what=_("The contact details on your account were changed by our support team.")
        )
    for address in {old_email, customer.email}:
        outbox.enqueue_email(
            dedupe_key=f"contact-changed:{customer.public_id}:{secrets.token_hex(8)}",
            recipient=address,
            subject=message.subject,
            text=message.text,
            html=message.html,
            locale=customer.locale,
        )
    _tool_audit(staff, case, "agent.contact_corrected", reason, changed=changed)
    db.session.commit()
