"""The outbox: queue messages inside a business transaction; deliver them at least once."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import force_locale
from flask_babel.speaklater import LazyString
from sqlalchemy import func, select, update

from portal import clock, unit_of_work
from portal.backoff import retry_delay
from portal.extensions import db
from portal.i18n import language_for
from portal.mail.compose import Composed
from portal.mail.smtp import DeliveryError
from portal.models import Notice, OutboxMessage
from portal.models.audit import Actor
from portal.services import audit

log = logging.getLogger(__name__)


def enqueue_email(
    *,
    dedupe_key: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    locale: str = "en",
    notice_id: int | None = None,
    expires_at: datetime | None = None,
) -> OutboxMessage:
    """Add an email to the outbox in the caller's transaction; it leaves only if that commits.

    The message is built here, once, into the exact bytes the worker will hand to the server:
    the worker's hot path is decrypt and send, and every retry sends the identical message
    (same Message-ID), so a receiver can recognise a repeat.
    """
    config = current_app.config
    message_id = make_msgid(domain=urlsplit(config["BASE_URL"]).hostname)
    email = EmailMessage()
    email["From"] = config["MAIL_FROM"]
    email["To"] = recipient  # the header policy refuses CR/LF: no header injection
    # Defence in depth: the forms refuse line breaks in titles, but a subject is built from
    # stored text (and translations) that may predate that rule; a CR/LF would make the header
    # policy refuse the whole message, so it becomes a space instead.
    subject = _one_line(subject)
    email["Subject"] = subject
    email["Message-ID"] = message_id
    email["Date"] = format_datetime(clock.now())
    email["Content-Language"] = locale
    email["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the message 7-bit clean for any server.
    email.set_content(text, cte="quoted-printable")
    email.add_alternative(html, subtype="html", cte="quoted-printable")
    row = OutboxMessage(
        kind="email",
        dedupe_key=dedupe_key,
        message_id=message_id,
        subject=subject,
        locale=locale,
        next_attempt_at=clock.now(),
        expires_at=expires_at,
        notice_id=notice_id,
    )
    row.recipient = recipient
    row.body = email.as_bytes(policy=SMTP)
    db.session.add(row)
    return row


_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def _one_line(text: str) -> str:
    """text with each run of line breaks turned into one space (a header is one line)."""
    return _LINE_BREAKS.sub(" ", text).strip()


def enqueue_sms(
    *, dedupe_key: str, recipient: str, text: str, expires_at: datetime | None = None
) -> OutboxMessage:
    """Add a text message to the outbox in the caller's transaction."""
    row = _row("sms", dedupe_key, message_id=secrets.token_hex(16), expires_at=expires_at)
    row.recipient = recipient
    row.body = text
    db.session.add(row)
    return row


def queue_message(
    compose: Callable[..., Composed],
    *,
    to: str,
    locale: str,
    dedupe_key: str,
    sms: bool = False,
    expires_at: datetime | None = None,
    notice_id: int | None = None,
    **context,
) -> OutboxMessage:
    """Compose a message in the language of `locale` (the recipient's) and queue it to `to`.

    The one way a message is written: `compose(**context)` runs inside the recipient's language,
    and lazy texts in the context (`_l(...)`) are read in it too, never in the language of the
    page or of the person who caused the message. By text message when `sms` (the composer is
    asked for its short form), else by email with `locale` as its Content-Language.
    """
    with force_locale(language_for(locale)):
        context = {k: str(v) if isinstance(v, LazyString) else v for k, v in context.items()}
        message = compose(**context, sms=True) if sms else compose(**context)
    if sms:
        return enqueue_sms(
            dedupe_key=dedupe_key, recipient=to, text=message.text, expires_at=expires_at
        )
    return enqueue_email(
        dedupe_key=dedupe_key,
        recipient=to,
        subject=message.subject,
        text=message.text,
        html=message.html,
        locale=locale,
        notice_id=notice_id,
        expires_at=expires_at,
    )


def enqueue_webhook(*, event: str, data: dict) -> OutboxMessage | None:
    """Queue an event for the organisation's systems (when PORTAL_WEBHOOK_URL is set).

    The body is signed when it is sent, with a secret that never enters the database.
    """
    url = current_app.config["WEBHOOK_URL"]
    if not url:
        return None
    event_id = secrets.token_hex(16)
    body = json.dumps({"id": event_id, "type": event, "data": data}, sort_keys=True)
    row = _row("webhook", f"webhook:{event_id}", message_id=event_id, subject=event)
    row.recipient = url
    row.body = body
    db.session.add(row)
    return row


def _row(kind: str, dedupe_key: str, **fields) -> OutboxMessage:
    return OutboxMessage(kind=kind, dedupe_key=dedupe_key, next_attempt_at=clock.now(), **fields)


@dataclass(frozen=True)
class OpenedMessage:
    """An outbox row with its sealed parts opened, for the development mailbox and tests."""

    row: OutboxMessage
    recipient: str
    text: str
    html: str


def open_message(row: OutboxMessage) -> OpenedMessage:
    recipient = row.recipient
    if row.kind != "email":
        return OpenedMessage(row, recipient, row.body.decode(), "")
    email = message_from_bytes(row.body, policy=default_policy)
    text = email.get_body(("plain",))
    html = email.get_body(("html",))
    return OpenedMessage(
        row,
        recipient,
        text.get_content() if text is not None else "",
        html.get_content() if html is not None else "",
    )


@dataclass
class BatchResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    claimed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Transports:
    """Where each kind of message goes; a kind without a transport waits in the queue."""

    email: object | None = None
    sms: object | None = None
    webhook: object | None = None

    def kinds(self) -> list[str]:
        return [k for k in ("email", "sms", "webhook") if getattr(self, k) is not None]

    def close(self) -> None:
        for transport in (self.email, self.sms, self.webhook):
            if transport is not None:
                transport.close()


def _kept_here(row: OutboxMessage, transports: Transports) -> bool:
    """Is the outbox row itself where this message is read (development's /dev/mail)?"""
    return getattr(getattr(transports, row.kind, None), "keeps_body", False)


def _deliver(row: OutboxMessage, transports: Transports) -> None:
    """Hand one message to its transport; raise DeliveryError on failure."""
    recipient = row.recipient
    if row.kind == "email":
        transports.email.send(current_app.config["MAIL_FROM"], recipient, row.body)
    elif row.kind == "sms":
        transports.sms.send(recipient, row.body.decode())
    elif row.kind == "webhook":
        transports.webhook.send(recipient, row.body, event=row.subject)


def purge_body(row: OutboxMessage, now: datetime) -> None:
    """Empty the body of a message that has left the queue, keeping a SHA-256 of it.

    A code or link message sitting in the outbox after delivery is a second copy of the secret
    (in backups and dumps too); delivery is done, so nothing reads the body again.
    """
    if row.body_purged_at is not None:
        return
    row.body_digest = hashlib.sha256(row.body).digest()
    row.body = b""
    row.body_purged_at = now


def _claim(now: datetime, limit: int, kinds: list[str]) -> list[OutboxMessage]:
    # FOR UPDATE SKIP LOCKED: each worker takes rows no other worker holds, and the locks end
    # with the transaction, so a killed worker's rows become available again at once.
    # (SQLite has no row locks and one writer at a time; there one worker runs.)
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.status == "queued",
                OutboxMessage.next_attempt_at <= now,
                OutboxMessage.kind.in_(kinds),
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def deliver_batch(
    transports: Transports, now: datetime | None = None, limit: int | None = None
) -> BatchResult:
    """Claim one batch of due messages, hand them to the transport, record what happened.

    A worker iteration: the caller's edge commits it (portal.unit_of_work.unit). A message is
    marked sent only after the server accepted it, in the transaction that holds its row lock:
    a crash before the commit makes it due again (at least once, never lost).
    """
    now = now or clock.now()
    limit = limit or current_app.config["OUTBOX_BATCH_SIZE"]
    max_attempts = current_app.config["OUTBOX_MAX_ATTEMPTS"]
    result = BatchResult()
    rows = _claim(now, limit, transports.kinds())
    result.claimed = len(rows)
    sent_notices: list[int] = []
    unreachable: dict[str, DeliveryError] = {}  # kind -> why its transport cannot be reached
    for row in rows:
        if row.expires_at is not None and row.expires_at <= now:
            row.status = "expired"
            row.last_error = "expired before delivery"
            purge_body(row, now)
            result.expired += 1
            continue
        error = unreachable.get(row.kind)
        if error is None:
            try:
                _deliver(row, transports)
            except DeliveryError as exc:
                error = exc
                if exc.connection:
                    # The server is unreachable: the rest of its kind waits too, untried.
                    unreachable[row.kind] = exc
        row.attempts += 1
        if error is None:
            row.status = "sent"
            row.sent_at = now
            row.last_error = ""
            if not _kept_here(row, transports):
                purge_body(row, now)
            if row.notice_id is not None:
                sent_notices.append(row.notice_id)
            result.sent += 1
        elif error.permanent or row.attempts >= max_attempts:
            row.status = "failed"
            row.last_error = str(error)
            purge_body(row, now)
            result.failed += 1
            audit.record(
                "outbox.failed",
                actor=Actor.OUTBOX,
                subject_type="outbox_message",
                subject_id=row.id,
                outcome="failure",
                details={"attempts": row.attempts, "kind": row.kind},
            )
        else:
            row.next_attempt_at = now + retry_delay(row.attempts)
            row.last_error = str(error)
            result.retried += 1
    if sent_notices:
        db.session.execute(
            update(Notice).where(Notice.id.in_(sent_notices)).values(sent_at=now),
            execution_options={"synchronize_session": False},
        )
    if result.claimed:
        audit.record(
            "outbox.delivered",
            actor=Actor.OUTBOX,
            subject_type="outbox",
            details={
                "sent": result.sent,
                "retried": result.retried,
                "failed": result.failed,
                "expired": result.expired,
            },
        )
    db.session.flush()
    if result.claimed:
        log.info(
            "outbox batch: sent=%d retried=%d failed=%d expired=%d",
            result.sent,
            result.retried,
            result.failed,
            result.expired,
        )
    return result


def drain(transports: Transports, now: datetime | None = None) -> BatchResult:
    """Deliver batches until nothing is due (or only messages that just failed to go)."""
    total = BatchResult()
    while True:
        batch = deliver_batch(transports, now=now)
        # Each batch is kept as it is delivered: its row locks end, and a crash later does not
        # send it again.
        unit_of_work.checkpoint()
        for name in ("sent", "retried", "failed", "expired", "claimed"):
            setattr(total, name, getattr(total, name) + getattr(batch, name))
        if batch.claimed == 0 or batch.sent + batch.failed + batch.expired == 0:
            return total


@dataclass
class OutboxStatus:
    counts: dict[str, int]
    oldest_due_at: datetime | None
    due_now: int


def status(now: datetime | None = None) -> OutboxStatus:
    """Counts by state and the oldest message waiting to go."""
    now = now or clock.now()
    counts = dict.fromkeys(("queued", "sent", "failed", "expired"), 0)
    for state, count in db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ):
        counts[state] = count
    oldest, due = db.session.execute(
        select(
            func.min(OutboxMessage.next_attempt_at),
            func.count().filter(OutboxMessage.next_attempt_at <= now),
        ).where(OutboxMessage.status == "queued")
    ).one()
    return OutboxStatus(counts, oldest, due)
