"""Customers: find them by contact details without any plaintext column."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db, vault
from portal.models import Customer
from portal.validation import normalise_email


def find_by_email(address: str) -> list[Customer]:
    """Customers whose email matches (case-insensitive), through the keyed blind index."""
    indexes = vault.blind_indexes(normalise_email(address), "email")
    return list(
        db.session.scalars(
            select(Customer).where(Customer.email_index.in_(indexes)).order_by(Customer.id)
        )
    )
