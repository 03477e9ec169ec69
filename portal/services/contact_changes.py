"""Contact changes staff ask for: held until the new address proves itself and it is safe.

An agent correcting a customer's email or phone must not be able to hand the account to the
address they typed (their own, say) and then send it a sign-in link. So a change made by staff:

- waits here, not on the customer, until the new address enters the code sent to it;
- is told to the address on file, with a "this was not me" link that cancels it and escalates
  the case;
- applies only when a second staff member (not the one who asked) approves it, or after
  CONTACT_CHANGE_HOLD_TTL with no cancellation;
- and while it is held, no link or code that opens the account goes out on the agent's tools,
  nor ever to an address changed by staff within that time without the second approval.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

import pyotp
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_contact_change_notice, compose_contact_confirm
from portal.models import Case, ContactChange, Customer, StaffMember
from portal.models.audit import Actor, staff_actor
from portal.models.case import CaseStatus, MessageKind
from portal.services import audit, outbox, tokens
from portal.services.cases import CaseError, add_message
from portal.services.customers import mask_email, mask_phone

FIELDS = ("email", "phone")


class ContactChangeError(CaseError):
    """A contact change cannot be asked for, approved or cancelled as asked (said in words)."""


class ChangeLinkUnusable(ContactChangeError):
    """A confirm or cancel link that was changed, has expired, or whose change is over."""


def hold() -> object:
    """How long a staff change waits without a second approval (and an address stays held)."""
    return current_app.config["CONTACT_CHANGE_HOLD_TTL"]


def is_open(change: ContactChange) -> bool:
    """Neither applied nor cancelled, and its new address may still prove itself."""
    return (
        change.applied_at is None
        and change.cancelled_at is None
        and (change.proved_at is not None or clock.now() < change.requested_at + hold())
    )


def due_at(change: ContactChange) -> datetime:
    """When the change applies by itself if nobody approves or cancels it."""
    return change.requested_at + hold()


def masked(change: ContactChange) -> str:
    """The new address as staff see it: enough to recognise, not to copy."""
    return mask_email(change.value) if change.field == "email" else mask_phone(change.value)


def state(change: ContactChange) -> str:
    """Where the change stands, for staff, in words."""
    if change.cancelled_at is not None:
        return _("Cancelled")
    if change.applied_at is not None:
        return _("Applied")
    if not is_open(change):
        return _("Expired: the new address never entered its code")
    if change.proved_at is None:
        return _("Waiting for the new address to enter its code")
    return _("Waiting for a second staff member's approval, or until the waiting time is over")


def for_customer(customer: Customer) -> list[ContactChange]:
    """A customer's staff contact changes, newest first (for the case and record pages)."""
    return list(
        db.session.scalars(
            select(ContactChange)
            .where(ContactChange.customer_id == customer.id)
            .order_by(ContactChange.requested_at.desc(), ContactChange.id.desc())
            .limit(10)
        )
    )


def waiting() -> list[ContactChange]:
    """Every change still open, oldest first: what second staff members are asked to look at."""
    rows = db.session.scalars(
        select(ContactChange)
        .where(ContactChange.applied_at.is_(None), ContactChange.cancelled_at.is_(None))
        .order_by(ContactChange.requested_at, ContactChange.id)
        .limit(200)
    )
    return [c for c in rows if is_open(c)]


def by_public_id(public_id: str) -> ContactChange | None:
    return db.session.scalar(select(ContactChange).where(ContactChange.public_id == public_id))


# --- the hold: who may be sent a link or a code --------------------------------------------------


def held(customer: Customer, field: str) -> bool:
    """True while a staff change of this field, asked for within the hold and not approved by a
    second staff member, is open or was applied: its new address gets nothing that opens the
    account, and the agent tools that send one wait (the old address could be the one lost)."""
    since = clock.now() - hold()
    rows = db.session.scalars(
        select(ContactChange).where(
            ContactChange.customer_id == customer.id,
            ContactChange.field == field,
            ContactChange.cancelled_at.is_(None),
            ContactChange.approved_at.is_(None),
            ContactChange.requested_at > since,
        )
    )
    return any(c.applied_at is not None or is_open(c) for c in rows)


def recently_changed(customer: Customer, field: str) -> bool:
    """True when the value on file came from a staff change within the hold that no second
    staff member approved. Every sender of a link or a code checks it (a belt to the hold's
    braces: by the rules above such a value cannot be on file, but a setting changed between
    request and apply, or a future path, must not open a gap)."""
    since = clock.now() - hold()
    return (
        db.session.scalar(
            select(ContactChange.id)
            .where(
                ContactChange.customer_id == customer.id,
                ContactChange.field == field,
                ContactChange.applied_at.is_not(None),
                ContactChange.cancelled_at.is_(None),
                ContactChange.approved_at.is_(None),
                ContactChange.requested_at > since,
            )
            .limit(1)
        )
        is not None
    )


# --- asking ---------------------------------------------------------------------------------------


def _code_digest(public_id: str, code: str) -> bytes:
    from portal.services.verification import _code_digest as digest

    return digest(f"contact-change:{public_id}", code)


def refuse_if_waiting(customer: Customer, field: str) -> None:
    """One change of a field at a time: a second request could bury the first one's notice."""
    for other in db.session.scalars(
        select(ContactChange).where(
            ContactChange.customer_id == customer.id,
            ContactChange.field == field,
            ContactChange.applied_at.is_(None),
            ContactChange.cancelled_at.is_(None),
        )
    ):
        if is_open(other):
            raise ContactChangeError(
                _("A change of this contact is already waiting. Cancel it first.")
            )


def request_change(
    staff: StaffMember, customer: Customer, case: Case | None, field: str, value: str, reason: str
) -> ContactChange:
    """Hold a change of one field; send a code to the new address and tell the one on file."""
    if field not in FIELDS:
        raise ContactChangeError(_("Give the corrected email or phone."))
    refuse_if_waiting(customer, field)
    now = clock.now()
    # Customer-entered, not read aloud to the agent: a code that passes through staff is the
    # pattern fraudsters train people to follow, and the agent's hands must not finish the change.
    code = pyotp.HOTP(pyotp.random_base32()).at(0)
    change = ContactChange(
        public_id=secrets.token_hex(16),
        customer_id=customer.id,
        case_id=case.id if case else None,
        field=field,
        confirm_nonce=secrets.token_urlsafe(16),
        cancel_nonce=secrets.token_urlsafe(16),
        requested_by_id=staff.id,
        requested_at=now,
    )
    change.customer = customer
    change.value = value
    change.code_digest = _code_digest(change.public_id, code)
    db.session.add(change)
    db.session.flush()
    hours = int(hold().total_seconds() // 3600)
    sms = field == "phone"
    outbox.queue_message(
        compose_contact_confirm,
        to=value,
        locale=customer.locale,
        dedupe_key=f"contact-confirm:{change.public_id}",
        sms=sms,
        expires_at=due_at(change),
        link=tokens.link(tokens.Purpose.CONTACT_CONFIRM, change.public_id, change.confirm_nonce),
        code=code,
        hours=hours,
    )
    # The address on file is told, with no secret and no new address in it (it may be read by
    # the person who asked for the change), and with the way to stop it.
    what = (
        _l("Our support team was asked to change the email address on your account.")
        if field == "email"
        else _l("Our support team was asked to change the phone number on your account.")
    )
    outbox.queue_message(
        compose_contact_change_notice,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"contact-change:{change.public_id}",
        what=what,
        link=tokens.link(tokens.Purpose.CONTACT_CANCEL, change.public_id, change.cancel_nonce),
        hours=hours,
    )
    audit.record(
        "contact_change.requested",
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=customer.public_id,
        details={
            "change": change.public_id,
            "field": field,
            "case": case.public_id if case else "",
            "reason": reason,
        },
    )
    db.session.flush()
    return change


def _event(change: ContactChange, staff: StaffMember | None, text: str) -> None:
    if change.case is not None:
        add_message(change.case, MessageKind.EVENT, text, staff)


# --- the new address proves itself ---------------------------------------------------------------


def _from_token(purpose: tokens.Purpose, token: str) -> ContactChange:
    try:
        public_id, nonce = tokens.load(purpose, token)
    except tokens.InvalidToken as exc:
        raise ChangeLinkUnusable(_("This link does not work any more.")) from exc
    change = by_public_id(public_id)
    expected = (
        None
        if change is None
        else change.confirm_nonce
        if purpose == tokens.Purpose.CONTACT_CONFIRM
        else change.cancel_nonce
    )
    if expected is None or not hmac.compare_digest(nonce.encode(), expected.encode()):
        raise ChangeLinkUnusable(_("This link does not work any more."))
    return change


def check_confirm_link(token: str) -> ContactChange:
    """GET: can this link still confirm? Spends nothing (mail scanners open links)."""
    change = _from_token(tokens.Purpose.CONTACT_CONFIRM, token)
    if not is_open(change) or change.proved_at is not None:
        raise ChangeLinkUnusable(_("This link does not work any more."))
    if change.code_tries >= current_app.config["CODE_MAX_TRIES"]:
        raise ChangeLinkUnusable(_("Too many wrong tries for this code. Please call us."))
    return change


def confirm(token: str, typed: str) -> ContactChange:
    """The new address's owner enters the code; the change then waits or applies."""
    from portal.services.verification import normalise_code

    change = check_confirm_link(token)
    limit = current_app.config["CODE_MAX_TRIES"]
    code = normalise_code(typed or "")
    if code is None:
        raise ContactChangeError(_("Enter the 6 digits from the message we sent you."))
    if not hmac.compare_digest(_code_digest(change.public_id, code), change.code_digest):
        change.code_tries += 1
        audit.record(
            "contact_change.code_failed",
            actor=Actor.CUSTOMER,
            subject_type="customer",
            subject_id=change.customer.public_id,
            outcome="failure",
            details={"change": change.public_id, "tries": change.code_tries},
        )
        db.session.flush()
        if change.code_tries >= limit:
            raise ChangeLinkUnusable(_("Too many wrong tries for this code. Please call us."))
        raise ContactChangeError(
            _("That code is not right. Please check the message and try again.")
        )
    change.proved_at = clock.now()
    audit.record(
        "contact_change.proved",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=change.customer.public_id,
        details={"change": change.public_id, "field": change.field},
    )
    _event(change, None, f"Contact change ({change.field}): the new address entered its code")
    settle(change)
    db.session.flush()
    return change


# --- "this was not me" ---------------------------------------------------------------------------


def check_cancel_link(token: str) -> ContactChange:
    """GET: is this a cancel link of ours? Spends nothing."""
    return _from_token(tokens.Purpose.CONTACT_CANCEL, token)


def cancel_by_customer(token: str) -> ContactChange:
    """The address on file says the change was not theirs: stop it (if it has not applied) and
    escalate the case either way, away from the agent who asked for it."""
    change = check_cancel_link(token)
    if change.applied_at is None and change.cancelled_at is None:
        change.cancelled_at = clock.now()
        change.cancelled_by = "customer"
    change.cancel_nonce = secrets.token_urlsafe(16)  # the link works once
    audit.record(
        "contact_change.disowned",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=change.customer.public_id,
        outcome="failure",
        details={
            "change": change.public_id,
            "field": change.field,
            "cancelled": change.applied_at is None,
        },
    )
    _escalate(change)
    db.session.flush()
    return change


def _escalate(change: ContactChange) -> None:
    """Top of the queue, and off the asking agent's desk: they may be the one who did it."""
    case = change.case
    if case is None:
        return
    case.due_at = clock.now()
    case.status = CaseStatus.OPEN
    case.assignee_id = None
    case.updated_at = clock.now()
    _event(
        change,
        None,
        f"Escalated: the customer said the contact change ({change.field}) was not theirs",
    )
    audit.record(
        "case.escalated",
        actor=Actor.CUSTOMER,
        subject_type="case",
        subject_id=case.public_id,
        details={"change": change.public_id},
    )


# --- staff: approve or cancel --------------------------------------------------------------------


def approve(staff: StaffMember, change: ContactChange, reason: str) -> None:
    """A second staff member approves: the change applies once its address proved itself."""
    from portal.services.support_desk import check_reason

    reason = check_reason(reason)
    if not is_open(change):
        raise ContactChangeError(_("This change is no longer waiting."))
    # Two people, or none of this holds: the one who asked can never approve it.
    if change.requested_by_id == staff.id:
        raise ContactChangeError(_("A second staff member must approve a change you asked for."))
    if change.approved_at is not None:
        raise ContactChangeError(_("This change is already approved."))
    change.approved_by_id = staff.id
    change.approved_by = staff
    change.approved_at = clock.now()
    audit.record(
        "contact_change.approved",
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=change.customer.public_id,
        details={"change": change.public_id, "field": change.field, "reason": reason},
    )
    _event(change, staff, f"Contact change ({change.field}) approved — {reason}")
    settle(change)
    db.session.flush()


def cancel_by_staff(staff: StaffMember, change: ContactChange, reason: str) -> None:
    """Any agent may stop a waiting change (stopping is always safe)."""
    from portal.services.support_desk import check_reason

    reason = check_reason(reason)
    if change.applied_at is not None or change.cancelled_at is not None:
        raise ContactChangeError(_("This change is no longer waiting."))
    change.cancelled_at = clock.now()
    change.cancelled_by = staff.public_id
    audit.record(
        "contact_change.cancelled",
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=change.customer.public_id,
        details={"change": change.public_id, "field": change.field, "reason": reason},
    )
    _event(change, staff, f"Contact change ({change.field}) cancelled — {reason}")
    db.session.flush()


# --- applying ------------------------------------------------------------------------------------


def settle(change: ContactChange) -> bool:
    """Apply the change when its address proved itself and it is approved or has waited out
    the hold; return whether it applied."""
    if not is_open(change) or change.proved_at is None:
        return False
    if change.approved_at is None and clock.now() < due_at(change):
        return False
    customer = change.customer
    setattr(customer, change.field, change.value)  # a blind index follows its sealed value
    customer.updated_at = clock.now()
    change.applied_at = clock.now()
    audit.record(
        "contact_change.applied",
        actor=Actor.JOBS if change.approved_at is None else staff_actor(change.approved_by),
        subject_type="customer",
        subject_id=customer.public_id,
        details={
            "change": change.public_id,
            "field": change.field,
            "approved": change.approved_at is not None,
        },
    )
    _event(change, None, f"Contact change ({change.field}) applied")
    db.session.flush()
    return True


def settle_due(customer: Customer | None = None) -> int:
    """Apply every proved change whose hold is over (one customer's, or all); return how many."""
    query = select(ContactChange).where(
        ContactChange.applied_at.is_(None),
        ContactChange.cancelled_at.is_(None),
        ContactChange.proved_at.is_not(None),
        ContactChange.requested_at <= clock.now() - hold(),
    )
    if customer is not None:
        query = query.where(ContactChange.customer_id == customer.id)
    return sum(settle(change) for change in db.session.scalars(query).all())
