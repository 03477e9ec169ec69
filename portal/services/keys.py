"""Data-key rotation: re-seal personal data under the newest key, in resumable batches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal.extensions import db, vault
from portal.models import Customer, Exposure, OutboxMessage
from portal.services import audit
from portal.validation import normalise_email, normalise_name, normalise_phone

BATCH_SIZE = 500


def _reseal(blob: bytes | None, context: str) -> bytes | None:
    if blob is None or vault.is_current(blob):
        return blob
    return vault.seal(vault.open(blob, context), context)


def rotate(*, actor: str) -> dict[str, int]:
    """Re-seal every value not under the newest key; each batch commits, so a rerun resumes."""
    counts = {"customer": 0, "exposure": 0, "outbox_message": 0}
    last = 0
    while True:
        customers = db.session.scalars(
            select(Customer)
            .where(Customer.id > last)
            .order_by(Customer.id)
            .limit(BATCH_SIZE)
            .options(selectinload(Customer.exposures))
        ).all()
        if not customers:
            break
        for c in customers:
            last = c.id
            before = (c.name_sealed, c.email_sealed, c.phone_sealed)
            for column in ("name", "email", "phone"):
                attr = f"{column}_sealed"
                setattr(c, attr, _reseal(getattr(c, attr), f"customer.{column}.{c.public_id}"))
            # Rows from before the name and phone indexes get them here: rotation is the one
            # pass that opens every row.
            if before != (c.name_sealed, c.email_sealed, c.phone_sealed) or c.name_index is None:
                # The blind indexes follow the newest key too.
                c.email_index = vault.blind_index(normalise_email(c.email), "email")
                c.name_index = vault.blind_index(normalise_name(c.name), "name")
                c.phone_index = (
                    vault.blind_index(normalise_phone(c.phone), "phone") if c.phone else None
                )
                counts["customer"] += 1
            for e in c.exposures:
                context = Exposure.fragment_context(c.public_id, e.incident_id, e.data_class)
                resealed = _reseal(e.fragment_sealed, context)
                if resealed is not e.fragment_sealed:
                    e.fragment_sealed = resealed
                    counts["exposure"] += 1
        db.session.commit()
        db.session.expunge_all()
    last = 0
    while True:
        messages = db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id > last)
            .order_by(OutboxMessage.id)
            .limit(BATCH_SIZE)
        ).all()
        if not messages:
            break
        for m in messages:
            last = m.id
            before = (m.recipient_sealed, m.body_sealed)
            m.recipient_sealed = _reseal(m.recipient_sealed, m.context("recipient"))
            m.body_sealed = _reseal(m.body_sealed, m.context("body"))
            if before != (m.recipient_sealed, m.body_sealed):
                counts["outbox_message"] += 1
        db.session.commit()
        db.session.expunge_all()
    audit.record("keys.rotated", actor=actor, details=counts)
    db.session.commit()
    return counts
