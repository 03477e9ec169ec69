"""The outbox: queue messages inside a business transaction; deliver them at least once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import force_locale
from flask_babel.speaklater import LazyString
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm.attributes import set_committed_value

from portal import clock, unit_of_work
from portal.backoff import retry_delay
from portal.extensions import db
from portal.i18n import language_for
from portal.mail.compose import Composed
from portal.mail.mime import Skeleton, build_email
from portal.mail.smtp import DeliveryError
from portal.models import Notice, OutboxMessage, OutboxTemplate
from portal.models.audit import Actor
from portal.models.sealed import seal
from portal.services import audit, tokens

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
    # Defence in depth: the forms refuse line breaks in titles, but a subject is built from
    # stored text (and translations) that may predate that rule; a CR/LF would make the header
    # policy refuse the whole message, so it becomes a space instead.
    subject = one_line(subject)
    body = build_email(
        sender=config["MAIL_FROM"],
        recipient=recipient,
        subject=subject,
        message_id=message_id,
        date=format_datetime(clock.now()),
        locale=locale,
        text=text,
        html=html,
    )
    row = OutboxMessage(
        kind="email",
        dedupe_key=dedupe_key,
        message_id=message_id,
        subject=subject,
        locale=locale,
        next_attempt_at=clock.now(),
        created_at=clock.now(),  # the one clock: the queue's age is read against it
        expires_at=expires_at,
        notice_id=notice_id,
    )
    row.recipient = recipient
    row.body = body
    db.session.add(row)
    wake_workers()
    return row


# The channel an idle worker listens on (portal.worker.Wakeup).
WAKE_CHANNEL = "portal_outbox"


def wake_workers() -> None:
    """Tell idle workers a message is queued, when the caller's transaction commits.

    PostgreSQL's NOTIFY is transactional (delivered at commit, never for a rolled-back message,
    and several in one transaction arrive as one), so a code reaches its worker at once instead
    of after the worker's idle pause. SQLite has no NOTIFY: its worker wakes on its pause.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return
    # No autoflush: the caller's rows are flushed when the caller says so, not by this.
    with db.session.no_autoflush:
        db.session.execute(_NOTIFY, {"channel": WAKE_CHANNEL})


_NOTIFY = text("SELECT pg_notify(:channel, '')")

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def one_line(text: str) -> str:
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
    wake_workers()
    return row


def queue_message(
    compose: Callable[..., Composed],
    *,
    to: str | None,
    locale: str,
    dedupe_key: str,
    sms: bool = False,
    expires_at: datetime | None = None,
    notice_id: int | None = None,
    **context,
) -> OutboxMessage | None:
    """Compose a message in the language of `locale` (the recipient's) and queue it to `to`.

    `to` None (a person with no email on file, known by a postal address): nothing is queued.

    The one way a message is written: `compose(**context)` runs inside the recipient's language,
    and lazy texts in the context (`_l(...)`) are read in it too, never in the language of the
    page or of the person who caused the message. By text message when `sms` (the composer is
    asked for its short form), else by email with `locale` as its Content-Language.
    """
    if to is None:
        return None
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


def template(*, sender: str, subject: str, locale: str, text: str, html: str) -> tuple[int, str]:
    """(id, digest) of the outbox template with exactly this content (made the first time).

    Content-addressed: a rerun, or a second campaign with the same wording, reuses the row.
    """
    subject = one_line(subject)
    digest = template_digest(sender, subject, locale, text, html)
    found = db.session.scalar(select(OutboxTemplate.id).where(OutboxTemplate.digest == digest))
    if found is not None:
        return found, digest
    row = OutboxTemplate(digest=digest, sender=sender, subject=subject, locale=locale)
    row.text, row.html = text, html
    db.session.add(row)
    db.session.flush()
    return row.id, digest


def template_digest(sender: str, subject: str, locale: str, text: str, html: str) -> str:
    parts = (sender, subject, locale, text, html)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def templated_body(
    *, template: str, issued_at: int, values: dict[str, str], links: dict[str, list[str]]
) -> bytes:
    """What a templated message's row holds (sealed like any body): its template's digest, the
    time it was queued (its Date, and the date of its links' tokens), its slots' values, and
    for each link slot the token's (purpose, public id, nonce), signed when it is sent."""
    return json.dumps(
        {"template": template, "issued_at": issued_at, "values": values, "links": links},
        separators=(",", ":"),
    ).encode()


# Templates by digest: the digest names the content, so a cached one is never stale (a process
# sees few: one per language and variant of a campaign).
_skeletons: dict[str, Skeleton] = {}


def _skeleton(digest: str) -> Skeleton:
    skeleton = _skeletons.get(digest)
    if skeleton is None:
        template = db.session.scalars(
            select(OutboxTemplate).where(OutboxTemplate.digest == digest)
        ).one()
        skeleton = Skeleton(
            sender=template.sender,
            subject=template.subject,
            locale=template.locale,
            text=template.text,
            html=template.html,
        )
        if len(_skeletons) >= 256:
            _skeletons.clear()
        _skeletons[digest] = skeleton
    return skeleton


def message_bytes(row: OutboxMessage, recipient: str | None = None) -> bytes:
    """The message a row stands for: its body, or its template filled with its values.

    recipient: the row's, when the caller has opened it already (each read of a sealed field
    decrypts it again).

    A templated message is the same bytes at every try: its Date, boundary and links' tokens
    come from what the row holds, not from the time it is sent.
    """
    body = row.body
    if row.template_id is None or not body:
        return body  # not templated, or emptied once it left the queue
    stored = json.loads(body)
    values = dict(stored["values"])
    issued_at = stored["issued_at"]
    for name, (purpose, public_id, nonce) in stored["links"].items():
        values[name] = tokens.link(tokens.Purpose(purpose), public_id, nonce, issued_at=issued_at)
    return _skeleton(stored["template"]).assemble(
        recipient=row.recipient if recipient is None else recipient,
        message_id=row.message_id,
        date=format_datetime(datetime.fromtimestamp(issued_at, UTC)),
        values=values,
    )


def after_bulk_queue() -> None:
    """Refresh PostgreSQL's statistics of the queue after queueing many messages at once.

    Why: the worker claims one message at a time by the due index; with statistics from when the
    queue was empty, the planner reads and sorts every queued row for each claim instead (5 ms a
    message at 5,000 queued, growing with the queue), until autovacuum catches up. ANALYZE samples
    a fixed number of rows, so this costs well under a second even at a million.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.flush()
        db.session.execute(text("ANALYZE outbox_message"))
        wake_workers()


def _row(kind: str, dedupe_key: str, **fields) -> OutboxMessage:
    now = clock.now()
    return OutboxMessage(
        kind=kind, dedupe_key=dedupe_key, next_attempt_at=now, created_at=now, **fields
    )


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
    email = message_from_bytes(message_bytes(row), policy=default_policy)
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
    # kind -> why its server could not be reached this pass (the worker pauses before the next)
    unreachable: dict[str, str] = field(default_factory=dict)

    def add(self, other: BatchResult) -> None:
        for name in ("sent", "retried", "failed", "expired", "claimed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unreachable.update(other.unreachable)

    @property
    def moved(self) -> int:
        """Messages that left the queue this pass (not those that will be tried again)."""
        return self.sent + self.failed + self.expired


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


def _deliver(row: OutboxMessage, transports: Transports) -> bytes:
    """Hand one message to its transport and return its bytes; raise DeliveryError on failure."""
    recipient = row.recipient
    body = message_bytes(row, recipient)
    if row.kind == "email":
        transports.email.send(current_app.config["MAIL_FROM"], recipient, body)
    elif row.kind == "sms":
        transports.sms.send(recipient, body.decode())
    elif row.kind == "webhook":
        transports.webhook.send(recipient, body, event=row.subject)
    return body


def _purged(row: OutboxMessage, now: datetime, sent: bytes) -> dict:
    """The column values of `row` with its body emptied (see purge_body); sent: its bytes."""
    return {
        "body_digest": hashlib.sha256(sent).digest(),
        "body_sealed": seal(OutboxMessage, "body_sealed", row.seal_binding, b""),
        "body_purged_at": now,
    }


def purge_body(row: OutboxMessage, now: datetime) -> None:
    """Empty the body of a message that has left the queue, keeping a SHA-256 of it.

    A code or link message sitting in the outbox after delivery is a second copy of the secret
    (in backups and dumps too); delivery is done, so nothing reads the body again.
    """
    if row.body_purged_at is not None:
        return
    row.body_digest = hashlib.sha256(message_bytes(row)).digest()
    row.body = b""
    row.body_purged_at = now


def claim_statement(
    now: datetime, limit: int, kinds: list[str], *, urgent: bool = False, besides=()
):
    """The claim's query: the oldest due messages no other worker holds (its index: _due).

    urgent: only those with an expiry, codes and sign-in links (their index: _urgent). besides:
    ids this claim holds already.
    """
    query = select(OutboxMessage).where(
        OutboxMessage.status == "queued",
        OutboxMessage.next_attempt_at <= now,
        OutboxMessage.kind.in_(kinds),
    )
    if urgent:
        query = query.where(OutboxMessage.expires_at.is_not(None))
    if besides:
        query = query.where(OutboxMessage.id.not_in(besides))
    return (
        query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _claim(now: datetime, limit: int, kinds: list[str]) -> list[OutboxMessage]:
    """Take up to `limit` due messages for this worker, and hold them with a lease.

    FOR UPDATE SKIP LOCKED: each worker takes rows no other worker holds. The claim is committed
    at once with each row's next attempt moved to the end of the lease, so the row locks end and
    no other worker sees those messages due while this one sends them, each recorded in a
    commit of its own. A worker killed mid-pass leaves the message in hand to go again (at most
    one per kill) and the rest of its claim due again when the lease ends (OUTBOX_LEASE). (SQLite
    has no row locks and one writer at a time; there one worker runs.)
    """
    # Codes and sign-in links first: they expire in minutes, and on notice day a million
    # notices queued before them would otherwise be sent first (oldest first), so that everyone
    # who clicked in the first hour got their code after its expiry, that is never.
    rows = list(db.session.scalars(claim_statement(now, limit, kinds, urgent=True)))
    if len(rows) < limit:
        taken = [row.id for row in rows]
        rows += db.session.scalars(claim_statement(now, limit - len(rows), kinds, besides=taken))
    lease_ends = now + current_app.config["OUTBOX_LEASE_TTL"]
    if rows:
        # One statement for the whole claim (the session would send one per row).
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([row.id for row in rows]))
            .values(next_attempt_at=lease_ends),
            execution_options={"synchronize_session": False},
        )
        for row in rows:
            set_committed_value(row, "next_attempt_at", lease_ends)
    unit_of_work.checkpoint()
    return rows


class _Recorder:
    """Where a pass records each message the server took: one statement, one commit.

    The hot path of notice day is "sent". On PostgreSQL it is written on a connection of its
    own, the outbox row and its notice in one statement that is its own transaction (one round
    trip a message; the session's commit would cost four: the pool's ping, BEGIN, UPDATE,
    COMMIT), and these commits return without waiting for the disk flush. Why that is safe: a
    worker killed after the commit has told the server, so the message is never sent again; only
    a crash of the database server itself within its WAL writer's delay (a fraction of a second)
    could forget the last few, and those would go again (at least once, never lost). On SQLite
    it goes through the session. Other outcomes (a refusal, an expiry, an unreachable server)
    are rare and go through the session with their audit events.
    """

    def __init__(self) -> None:
        self.connection = None
        self.postgres = False

    def __enter__(self) -> _Recorder:
        # The claimed rows are this worker's until their lease ends: nobody else changes them, so
        # the session's commits in the pass need not make each be read again from the database.
        self.session = db.session()
        self.expiring, self.session.expire_on_commit = self.session.expire_on_commit, False
        self.postgres = self.session.get_bind().dialect.name == "postgresql"
        if self.postgres:
            connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("SET synchronous_commit TO OFF")
            self.connection = connection
            # The driver's own cursor, for the one statement of the hot path (see sent()).
            self.cursor = connection.connection.driver_connection.cursor()
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        self.session.expire_on_commit = self.expiring
        if self.connection is None:
            return
        # Nothing here may hide why the pass ended: a database that went away mid-statement
        # must reach the worker as itself (it waits and tries again), not as a failed RESET.
        with contextlib.suppress(SQLAlchemyError):
            if exc_type is not None:
                self.connection.invalidate()  # it may be mid-statement: never back to the pool
            else:
                self.connection.exec_driver_sql("RESET synchronous_commit")
        with contextlib.suppress(SQLAlchemyError):
            self.connection.close()

    def sent(self, row: OutboxMessage, now: datetime, sent: bytes, *, keep_body: bool) -> None:
        values = {"p_row_id": row.id, "p_attempts": row.attempts + 1, "p_now": now}
        statement = _SENT_KEPT
        if not keep_body:
            purged = _purged(row, now, sent)
            values["p_body_sealed"] = purged["body_sealed"]
            values["p_body_digest"] = purged["body_digest"]
            statement = _SENT
        notice = row.notice_id is not None
        if notice:
            values["p_notice_id"] = row.notice_id
        if self.postgres:
            # The row and its notice in one statement: one transaction, one round trip.
            if notice:
                statement = _WITH_NOTICE[id(statement)]
            sql, constants = _compiled_for_postgres(statement)
            values.update(constants)
            values["p_now"] = now.astimezone(UTC)  # as UTCDateTime binds it
            # Straight to the driver, a prepared statement: SQLAlchemy's execute (its cache
            # lookup, parameter processing and result set-up) cost more CPU than the driver's
            # own call (cProfile of bench/outbox_bench.py, 3,000 messages). Its errors are
            # wrapped as SQLAlchemy's would be, so a database that went away is still told apart
            # from a bug (portal.services.readiness.database_unavailable).
            try:
                self.cursor.execute(sql, values, prepare=True)
            except _psycopg_error() as error:
                raise DBAPIError.instance(sql, None, error, _psycopg_error()) from error
            return
        # SQLite has one writer at a time: through the session, never a second connection that
        # would wait for this one's lock (and fail after the server already took the message).
        self.session.execute(statement, values)
        if notice:
            self.session.execute(_NOTICE_SENT, values)
        unit_of_work.checkpoint()


# Built once: the statements of the hot path, compiled and cached by SQLAlchemy the first time
# (a statement built per message cost more Python than the database took to run it).
_SENT_VALUES = {
    "status": "sent",
    "attempts": bindparam("p_attempts"),
    "sent_at": bindparam("p_now"),
    "next_attempt_at": bindparam("p_now"),  # when it left the queue (retention counts from it)
    "last_error": "",
}
_SENT_KEPT = (
    update(OutboxMessage).where(OutboxMessage.id == bindparam("p_row_id")).values(**_SENT_VALUES)
)
_SENT = _SENT_KEPT.values(
    body_sealed=bindparam("p_body_sealed"),
    body_digest=bindparam("p_body_digest"),
    body_purged_at=bindparam("p_now"),
)
_NOTICE_SENT = (
    update(Notice).where(Notice.id == bindparam("p_notice_id")).values(sent_at=bindparam("p_now"))
)
_WITH_NOTICE = {  # PostgreSQL: the notice's update rides along in the same statement
    id(statement): statement.add_cte(_NOTICE_SENT.cte("notice_sent"))
    for statement in (_SENT, _SENT_KEPT)
}


_postgres_sql: dict[int, tuple[str, dict]] = {}


def _compiled_for_postgres(statement) -> tuple[str, dict]:
    """A hot-path statement as the driver's SQL (%(name)s parameters) and its constant values,
    compiled once per process."""
    found = _postgres_sql.get(id(statement))
    if found is None:
        from sqlalchemy.dialects.postgresql import psycopg as dialect

        compiled = statement.compile(dialect=dialect.dialect())
        constants = {k: v for k, v in compiled.params.items() if not k.startswith("p_")}
        found = _postgres_sql[id(statement)] = (str(compiled), constants)
    return found


def _psycopg_error():
    import psycopg

    return psycopg.Error


def _hand_back(rows: list[OutboxMessage], claim_now: datetime) -> None:
    """Make the messages of a claim that the pass did not reach due again, now.

    Only while they are still this claim's (queued, lease as set): a row whose lease ran out
    may already be another worker's, and must not be made due a second time under it.
    """
    if not rows:
        return
    lease_ends = rows[0].next_attempt_at
    for row in rows:
        db.session.expunge(row)
    db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_([row.id for row in rows]),
            OutboxMessage.status == "queued",
            OutboxMessage.next_attempt_at == lease_ends,
        )
        .values(next_attempt_at=claim_now),
        execution_options={"synchronize_session": False},
    )
    unit_of_work.checkpoint()


def _margin(transports: Transports) -> float:
    """How much of the lease must be left to start a message: the longest its transport may
    take (a connection made within its timeout, then the message within it again: each is a
    deadline, not a per-read timeout), and some. A message is never begun that could outlive
    the lease and be taken by another worker meanwhile."""
    timeouts = [getattr(getattr(transports, k), "timeout", 0.0) for k in transports.kinds()]
    return 2 * max(timeouts, default=0.0) + 5.0


def deliver_batch(
    transports: Transports,
    now: datetime | None = None,
    limit: int | None = None,
    stopping: Callable[[], bool] | None = None,
) -> BatchResult:
    """One pass: claim a few due messages, then send them one at a time, each message's outcome
    committed on its own right after its server answered.

    So a worker killed at any point sends again at most the one message it was handing over;
    `stopping` is asked between messages, so a stop request waits for one message, never for a
    batch. Messages claimed but not reached (a stop, an unreachable server, a lease running out)
    are handed back due as they were, in the pass's last commit.

    A server that cannot be reached (refused, timed out, hung up mid-message) costs its messages
    no try: they stay due, the rest of their kind waits for the next pass, and the result names
    the kind in `unreachable` so the worker pauses. A message the server refused for now (4xx)
    is tried again later (portal.backoff) and fails for good after OUTBOX_MAX_ATTEMPTS refusals;
    a permanent refusal (5xx) fails it at once.
    """
    # `now` moves the clock for a test (a pass "hours later"); the pass itself reads the time at
    # each claim, so every lease starts when its claim does, however long the pass runs.
    shift = (now - clock.now()) if now is not None else timedelta(0)
    config = current_app.config
    limit = limit or config["OUTBOX_BATCH_SIZE"]
    max_attempts = config["OUTBOX_MAX_ATTEMPTS"]
    claim_size = min(limit, config["OUTBOX_CLAIM_SIZE"])
    usable = config["OUTBOX_LEASE_TTL"].total_seconds() - _margin(transports)
    if usable <= 0:
        log.error(
            "outbox: the lease (PORTAL_OUTBOX_LEASE_SECONDS) is shorter than twice the slowest "
            "transport's timeout: no message can be begun safely, so none is"
        )
    result = BatchResult()
    kinds = transports.kinds()
    with _Recorder() as recorder:
        while kinds and result.claimed < limit and not (stopping and stopping()):
            claimed_at, claim_now = time.monotonic(), clock.now() + shift
            rows = _claim(claim_now, min(claim_size, limit - result.claimed), kinds)
            if not rows:
                break
            untouched, late = [], False
            for row in rows:
                late = late or time.monotonic() - claimed_at > usable
                if row.kind not in kinds or late or (stopping and stopping()):
                    untouched.append(row)
                    continue
                result.claimed += 1
                now = clock.now() + shift
                sent = _deliver_one(row, transports, now, max_attempts, result)
                if sent is not None:
                    recorder.sent(row, now, sent, keep_body=_kept_here(row, transports))
                    db.session.expunge(row)  # recorded: the session has nothing to write
                    continue
                if row.kind in result.unreachable:
                    kinds.remove(row.kind)
                unit_of_work.checkpoint()  # this message's outcome is kept before the next
            _hand_back(untouched, claim_now)
            if late:
                break  # the claim's lease ran low: the next pass starts with a fresh one
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
        log.info(
            "outbox batch: sent=%d retried=%d failed=%d expired=%d",
            result.sent,
            result.retried,
            result.failed,
            result.expired,
        )
    for kind, why in result.unreachable.items():
        log.warning("outbox: the %s server cannot be reached (%s); its messages wait", kind, why)
    db.session.flush()
    return result


def _deliver_one(
    row: OutboxMessage,
    transports: Transports,
    now: datetime,
    max_attempts: int,
    result: BatchResult,
) -> bytes | None:
    """Hand one claimed message over. Its bytes when its server took it (the caller records
    that); None for any other outcome, which is set on the row, for the session's commit."""
    if row.expires_at is not None and row.expires_at <= now:
        row.status, row.next_attempt_at = "expired", now  # left the queue now
        row.last_error = "expired before delivery"
        purge_body(row, now)
        result.expired += 1
        return None
    try:
        try:
            sent = _deliver(row, transports)
        except DeliveryError:
            raise
        except Exception as unexpected:
            # A transport's own failure (a provider's garbled reply): a failed try on this
            # message, not the end of the worker (the message would come back and end the next).
            log.exception("outbox: %s transport failed", row.kind)
            raise DeliveryError(
                f"transport error: {type(unexpected).__name__}", permanent=False
            ) from unexpected
    except DeliveryError as error:
        row.last_error = str(error)
        if error.connection:
            # No server answered for this message: no try is counted. If it never got as far as
            # the message, it is due again at once (first in line when the server is back). If
            # it broke off during the message, the server may have taken it: no worker sends it
            # again before the pause is over (not at once, on a new connection).
            row.next_attempt_at = now
            if error.maybe_taken:
                row.next_attempt_at += current_app.config["OUTBOX_BACKOFF_MAX_TTL"]
            result.unreachable[row.kind] = str(error)
            return None
        row.attempts += 1
        if error.permanent or row.attempts >= max_attempts:
            row.status, row.next_attempt_at = "failed", now  # when it left (retry --since)
            # A notice or an update keeps its body (sealed) so that `portal outbox retry
            # --failed` can send the very same message once the cause is fixed; retention deletes
            # the row in its time. A message with an expiry (a code, a short-lived link) is of no
            # use late: its secret is not kept.
            if row.expires_at is not None:
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
            result.retried += 1
        return None
    result.sent += 1
    return sent


def drain(transports: Transports, now: datetime | None = None) -> BatchResult:
    """Deliver until nothing is due, or until every server with messages due is unreachable."""
    total = BatchResult()
    while True:
        batch = deliver_batch(transports, now=now)
        unit_of_work.checkpoint()  # the pass's summary in the audit trail
        total.add(batch)
        if batch.claimed == 0 or batch.moved == 0:
            return total


@dataclass(frozen=True)
class Requeued:
    requeued: int
    expired: int  # past their expiry (a code that would arrive too late): left as they are
    emptied: int  # failed before bodies were kept for a retry: nothing left to send


def requeue_failed(
    *,
    actor: str,
    since: datetime | None = None,
    kind: str | None = None,
    notice_of_incident: int | None = None,
) -> Requeued:
    """Queue again, with a fresh count of tries, the messages that failed for good (the address
    was fixed, the provider's outage is over). Each goes as the very same message (same bytes,
    same Message-ID), so a receiver that got it after all can tell it is a repeat."""
    now = clock.now()
    failed = OutboxMessage.status == "failed"
    if since is not None:
        failed &= OutboxMessage.next_attempt_at >= since
    if kind is not None:
        failed &= OutboxMessage.kind == kind
    if notice_of_incident is not None:
        failed &= OutboxMessage.notice_id.in_(
            select(Notice.id).where(Notice.incident_id == notice_of_incident)
        )
    late = failed & OutboxMessage.expires_at.is_not(None) & (OutboxMessage.expires_at <= now)
    emptied = failed & OutboxMessage.body_purged_at.is_not(None)
    counts = db.session.execute(
        select(func.count().filter(late), func.count().filter(emptied & ~late))
    ).one()
    ready = failed & OutboxMessage.body_purged_at.is_(None)
    ready &= OutboxMessage.expires_at.is_(None) | (OutboxMessage.expires_at > now)
    changed = db.session.execute(
        update(OutboxMessage)
        .where(ready)
        .values(status="queued", attempts=0, next_attempt_at=now, last_error=""),
        execution_options={"synchronize_session": False},
    ).rowcount
    outcome = Requeued(changed, int(counts[0] or 0), int(counts[1] or 0))
    audit.record(
        "outbox.requeued",
        actor=actor,
        subject_type="outbox",
        details={
            "requeued": outcome.requeued,
            "expired": outcome.expired,
            "emptied": outcome.emptied,
            "kind": kind or "all",
        },
    )
    db.session.flush()
    return outcome


@dataclass
class OutboxStatus:
    counts: dict[str, int]
    oldest_due_at: datetime | None
    due_now: int
    # When the message that has waited longest was queued (the age the alert watches).
    oldest_queued_at: datetime | None = None
    alert_after: timedelta | None = None
    now: datetime | None = None

    @property
    def waited(self) -> timedelta | None:
        """How long the oldest queued message has waited."""
        if self.oldest_queued_at is None or self.now is None:
            return None
        return max(self.now - self.oldest_queued_at, timedelta(0))

    @property
    def alert(self) -> bool:
        """Has a message waited longer than OUTBOX_ALERT_AFTER (a server down, no worker)?"""
        waited = self.waited
        return waited is not None and self.alert_after is not None and waited > self.alert_after


def status(now: datetime | None = None) -> OutboxStatus:
    """Counts by state, the oldest message waiting to go, and whether that is cause for alarm."""
    now = now or clock.now()
    counts = dict.fromkeys(("queued", "sent", "failed", "expired"), 0)
    for state, count in db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ):
        counts[state] = count
    oldest, due, queued_at = db.session.execute(
        select(
            func.min(OutboxMessage.next_attempt_at),
            func.count().filter(OutboxMessage.next_attempt_at <= now),
            func.min(OutboxMessage.created_at),
        ).where(OutboxMessage.status == "queued")
    ).one()
    return OutboxStatus(
        counts,
        oldest,
        due,
        oldest_queued_at=queued_at,
        alert_after=current_app.config["OUTBOX_ALERT_AFTER"],
        now=now,
    )
