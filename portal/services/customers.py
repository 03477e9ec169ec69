"""Customers: find them by contact details without any plaintext column."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.i18n import language_for
from portal.models import AuditEvent, Customer, Notice, StaffMember
from portal.models.audit import staff_actor
from portal.models.sealed import matches
from portal.services import audit, reference_codes
from portal.unit_of_work import write_is_the_point
from portal.validation import (
    Invalid,
    is_email,
    normalise_name,
    normalise_phone,
    phone_number,
)

SEARCH_KINDS = ("email", "phone", "reference", "name")
# A lookup answers a question about one person: a page of namesakes is the most it shows.
MAX_RESULTS = 20


class SearchError(Exception):
    """The query cannot be searched as it is; the message says why."""


def find_by_email(address: str) -> list[Customer]:
    """Customers whose email matches (case-insensitive), through the keyed blind index."""
    return list(
        db.session.scalars(
            select(Customer).where(matches(Customer.email_index, address)).order_by(Customer.id)
        )
    )


def guess_kind(query: str) -> str:
    """What an agent most likely typed: an address, a number, a letter's code, or a name."""
    query = query.strip()
    if "@" in query:
        return "email"
    if reference_codes.is_well_formed(reference_codes.normalise(query)):
        return "reference"
    if normalise_phone(query).lstrip("+").isdigit():
        return "phone"
    return "name"


def _matches(kind: str, query: str):
    """The WHERE clause for one kind of lookup; every index under every configured key, so a
    lookup keeps working during a key rotation."""
    if kind == "email":
        if not is_email(query.strip()):
            raise SearchError(_("That is not an email address."))
        return matches(Customer.email_index, query)
    if kind == "phone":
        phone = normalise_phone(query)
        if not phone.startswith("+"):
            phone = "+" + phone  # typed without the +: the country code is still in front
        try:
            phone = phone_number(phone)
        except Invalid as exc:
            raise SearchError(str(exc)) from None
        return matches(Customer.phone_index, phone)
    if kind == "reference":
        code = reference_codes.normalise(query)
        if not reference_codes.is_well_formed(code):
            raise SearchError(_("That is not a reference code from one of our letters."))
        return Customer.id.in_(select(Notice.customer_id).where(Notice.reference_code == code))
    if kind == "name":
        name = normalise_name(query)
        if not name:
            raise SearchError(_("Type the customer's full name."))
        return matches(Customer.name_index, name)
    raise SearchError(_("Choose what to search by."))


def search(staff: StaffMember, kind: str, query: str) -> list[Customer]:
    """Exact lookup through the blind indexes; recorded (the kind searched, never the value)."""
    query = (query or "").strip()
    if not query or len(query) > 254:
        raise SearchError(_("Type what the customer told you."))
    if kind not in SEARCH_KINDS:
        kind = guess_kind(query)
    found = list(
        db.session.scalars(
            select(Customer).where(_matches(kind, query)).order_by(Customer.id).limit(MAX_RESULTS)
        )
    )
    # Who looked for whom is security-relevant; the value typed is personal data, so it stays
    # out of the trail (a matching row's id is enough to reconstruct the look-up).
    audit.record(
        "customer.search",
        actor=staff_actor(staff),
        subject_type="customer",
        subject_id=found[0].public_id if len(found) == 1 else "",
        details={"kind": kind, "results": len(found)},
    )
    db.session.flush()
    return found


def by_public_id(public_id: str) -> Customer | None:
    return db.session.scalar(select(Customer).where(Customer.public_id == public_id))


def staff_customer(staff: StaffMember, public_id: str) -> Customer | None:
    """A customer's record for an agent; every look is recorded."""
    customer = by_public_id(public_id)
    if customer is not None:
        write_is_the_point(AuditEvent)  # on a GET too: the record of the look is the point
        audit.record(
            "customer.viewed",
            actor=staff_actor(staff),
            subject_type="customer",
            subject_id=customer.public_id,
        )
        db.session.flush()
    return customer


@dataclass(frozen=True)
class Masked:
    """A customer's contact points as an agent sees them in a list: enough to confirm with the
    caller, not enough to write to them."""

    email: str
    phone: str


def mask_email(address: str) -> str:
    local, _at, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"


def mask_phone(phone: str | None) -> str:
    if not phone:
        return "—"
    return f"{phone[:2]}•••{phone[-4:]}"


def masked(customer: Customer) -> Masked:
    # A person known only by a postal address has no email: said plainly, not "•••@".
    email = customer.email
    return Masked(mask_email(email) if email else _("no email on file"), mask_phone(customer.phone))


def choose_language(customer: Customer, language: str) -> None:
    """Remember the language the customer picked on the portal: their pages and every message
    from now on use it, and a later import of the organisation's file does not undo it."""
    if language not in current_app.config["LANGUAGES"]:
        raise ValueError(f"not a portal language: {language}")
    if language_for(customer.locale) != language:  # "es-MX" already reads Spanish: keep it
        customer.locale = language
        customer.updated_at = clock.now()
    customer.locale_chosen_at = clock.now()
    db.session.flush()
