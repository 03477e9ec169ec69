"""Read the outbox as a mailbox, for development."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import OutboxMessage
from portal.services.outbox import OpenedMessage, open_message


def recent(limit: int = 200) -> list[OpenedMessage]:
    rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit))
    return [open_message(row) for row in rows]


def get(message_id: int) -> OpenedMessage | None:
    row = db.session.get(OutboxMessage, message_id)
    return open_message(row) if row is not None else None
