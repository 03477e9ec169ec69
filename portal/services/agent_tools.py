"""An agent's tools on a customer, from one of their cases or from their record.

Each needs a reason and is audited; the views ask the agent to prove it is them first.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Case, Challenge, Customer, Notice, StaffMember
from portal.models.audit import staff_actor
from portal.services import assisted_sign_in, audit, contact_changes
from portal.services.cases import CaseError
from portal.services.support_desk import add_event, check_reason
from portal.validation import Invalid, email_address, phone_number


def _target(subject: Case | Customer, reason: str) -> tuple[Customer, Case | None, str]:
    """The customer a tool acts on, the case it was used from (if any), and the reason."""
    if isinstance(subject, Customer):
        customer, case = subject, None
    else:
        case, customer = subject, subject.customer
        if customer is None:
            raise CaseError(_("This case has no verified customer; link it to one first."))
    reason = check_reason(reason)
    contact_changes.settle_due(customer)  # a change whose wait is over counts from now on
    return customer, case, reason


def _refuse_while_held(customer: Customer) -> None:
    """No sign-in link from an agent while a staff change of where it goes is held: otherwise
    one agent changes the address to theirs and sends themselves the way in."""
    if contact_changes.held(customer, "email") or contact_changes.held(customer, "phone"):
        raise CaseError(
            _(
                "The contact details were changed by staff less than %(hours)d hours ago and no "
                "second staff member has approved it: no link or code can be sent yet.",
                hours=int(contact_changes.hold().total_seconds() // 3600),
            )
        )


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
        add_event(case, staff, f"{action} — {reason}")


def resend_link(staff: StaffMember, subject: Case | Customer, reason: str) -> None:
    """A fresh notice link to the address on file; every older link stops working."""
    customer, case, reason = _target(subject, reason)
    _refuse_while_held(customer)
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
    customer.totp_retry_at = None  # the app's sign-in need not wait either
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
    _refuse_while_held(customer)
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
    """Ask to correct the email or phone on file: the change is held (see contact_changes)."""
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
    changes = []
    if email and email != customer.email:
        changes.append(("email", email))
    if phone and phone != customer.phone:
        changes.append(("phone", phone))
    if not changes:
        raise CaseError(_("That is already what we have on file."))
    # Not applied here: held until the new address proves itself and a second staff member
    # approves (or the wait passes), with the address on file told and able to stop it.
    for field, _value in changes:
        contact_changes.refuse_if_waiting(customer, field)  # before anything is sent
    for field, value in changes:
        contact_changes.request_change(staff, customer, case, field, value, reason)
    _tool_audit(
        staff,
        customer,
        case,
        "agent.contact_change_requested",
        reason,
        changed=[field for field, _value in changes],
    )
    db.session.flush()
