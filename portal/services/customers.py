"""Customers: find them by contact details without any plaintext column."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from portal.extensions import db, vault
from portal.i18n import language_for
from portal.models import Customer
from portal.models.base import utcnow
from portal.validation import normalise_email


def find_by_email(address: str) -> list[Customer]:
    """Customers whose email matches (case-insensitive), through the keyed blind index."""
    indexes = vault.blind_indexes(normalise_email(address), "email")
    return list(
        db.session.scalars(
            select(Customer).where(Customer.email_index.in_(indexes)).order_by(Customer.id)
        )
    )


def choose_language(customer: Customer, language: str) -> None:
    """Remember the language the customer picked on the portal: their pages and every message
    from now on use it, and a later import of the organisation's file does not undo it."""
    if language not in current_app.config["LANGUAGES"]:
        raise ValueError(f"not a portal language: {language}")
    if language_for(customer.locale) != language:  # "es-MX" already reads Spanish: keep it
        customer.locale = language
        customer.updated_at = utcnow()
    customer.locale_chosen_at = utcnow()
    db.session.flush()
