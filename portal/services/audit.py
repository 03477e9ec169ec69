"""The audit trail: record security-relevant acts in an HMAC-chained, append-only table.

The chain is signed with its own keys (PORTAL_AUDIT_KEYS, newest first), each event naming the
key that signed it, so a rotation starts a new segment and older segments keep verifying with the
retired key kept after the newest. Its head is anchored outside the table by signed checkpoints
(`portal audit checkpoint`), so a deleted tail or a wiped table shows against the newest one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app, g, has_request_context, request
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.sql.util import find_tables

from portal import clock
from portal.config import legacy_audit_key
from portal.extensions import db
from portal.models import AuditEvent

GENESIS = "0" * 64
# One arbitrary constant: the PostgreSQL advisory lock that serialises appends to the chain.
_CHAIN_LOCK = 0x7A0D17

_process_run_id = secrets.token_hex(8)


def current_request_id() -> str:
    """The id of the request (or, outside a request, of this command run)."""
    if has_request_context():
        return getattr(g, "request_id", "") or ""
    return f"run-{_process_run_id}"


# Events written before the chain had keys of its own: signed with the key derived from the
# signing key, over the fields before key id and client address (their hash input never changes).
LEGACY = "legacy"


class AuditError(Exception):
    """A checkpoint that cannot be written or read; the message says why."""


@dataclass(frozen=True)
class AuditKey:
    id: str
    raw: bytes


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(raw: bytes) -> str:
    """A short public name for an audit key (it reveals nothing about the key)."""
    return hashlib.sha256(b"portal audit key id\x00" + raw).hexdigest()[:8]


def chain_keys() -> list[AuditKey]:
    """PORTAL_AUDIT_KEYS, newest first: the first signs, the others only verify. The chain's keys
    live outside the database, and are not the signing key: rotating that leaves the chain alone.
    """
    return [AuditKey(key_id(raw), raw) for raw in map(_decode, current_app.config["AUDIT_KEYS"])]


def _legacy_keys(keys: list[AuditKey]) -> list[bytes]:
    """Keys that may have signed a legacy event: every configured audit key (an operator adds the
    legacy key there before rotating the signing key), and, for the upgrade, the key derived
    from the signing keys still configured."""
    config = current_app.config
    derived = [
        _decode(legacy_audit_key(s))
        for s in [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    ]
    return [k.raw for k in keys] + derived


def current_client_address() -> str:
    """The client's address as the app sees it (through ProxyFix), or "" outside a request."""
    if has_request_context():
        return (request.remote_addr or "")[:45]
    return ""


def _message(event: AuditEvent) -> bytes:
    fields = [
        event.prev_hash,
        event.occurred_at.isoformat(),
        event.actor,
        event.action,
        event.subject_type,
        event.subject_id,
        event.request_id,
        event.outcome,
        event.details,
    ]
    if event.key_id != LEGACY:
        # The version tag cannot be mistaken for a legacy message (those open with a hash).
        fields = ["v2", event.key_id, *fields, event.client_addr]
    return "\x1f".join(fields).encode()


def _digest(key: bytes, event: AuditEvent) -> str:
    return hmac.new(key, _message(event), hashlib.sha256).hexdigest()


def _lock_chain() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        # Appends from concurrent transactions must not fork the chain.
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})


# Events recorded in this unit of work, appended to the chain as it commits (see _append).
_PENDING = "portal.audit_pending"


def record(
    action: str,
    *,
    actor: str,
    subject_type: str = "",
    subject_id: str | int = "",
    outcome: str = "success",
    details: dict | None = None,
) -> AuditEvent:
    """Record one event in the current transaction. Details must hold no secrets.

    What happened, when, by whom and from where is taken now; the event joins the chain when
    the unit of work commits (or when something reads the chain first), in the order recorded.
    """
    event = AuditEvent(
        occurred_at=clock.now(),
        actor=actor[:120],
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        request_id=current_request_id(),
        outcome=outcome,
        details=json.dumps(details or {}, sort_keys=True, separators=(",", ":")),
        client_addr=current_client_address(),
    )
    db.session.info.setdefault(_PENDING, []).append(event)
    db.session.flush()  # as before: what the caller changed is written, only the event waits
    return event


# The chain's head; built once (every audited request reads it).
_HEAD = select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)


def _append(session) -> None:
    """Chain the events recorded in this transaction: lock the chain, read its head, link.

    Done as the transaction commits, not as each event is recorded: the chain's lock (one for
    the whole portal on PostgreSQL) is then held for these few statements and the commit, not
    for the rest of a request (its page's rendering, other queries), which on notice day would
    make every link opened and every code typed wait for one another across all instances.
    """
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    _lock_chain()
    prev = session.execute(_HEAD).scalar_one_or_none()
    signing = chain_keys()[0]
    for event in pending:
        # After a rotation the first event under the new key links to the old head: a segment.
        event.key_id = signing.id
        event.prev_hash = prev or GENESIS
        event.hash = prev = _digest(signing.raw, event)
        session.add(event)
    session.flush()


@sa_event.listens_for(db.session, "before_commit")
def _append_before_commit(session) -> None:
    _append(session)


@sa_event.listens_for(db.session, "do_orm_execute")
def _append_before_reading(state) -> None:
    """Whoever reads the chain in this transaction sees the events it recorded, in place."""
    if (
        state.is_select
        and state.session.info.get(_PENDING)
        and AuditEvent.__table__ in find_tables(state.statement, include_joins=True)
    ):
        _append(state.session)


@sa_event.listens_for(db.session, "after_transaction_end")
def _forget_when_undone(session, transaction) -> None:
    # The whole transaction ended unkept (rolled back): its events go with it, as
    # their rows would have. A savepoint's end leaves them be (none is recorded inside one).
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


# --- checkpoints: the head of the chain, kept outside the table ---


@dataclass(frozen=True)
class Checkpoint:
    count: int
    head_id: int
    head: str
    at: str  # ISO 8601, UTC
    key: str
    sig: str = ""

    def _fields(self) -> dict:
        return {
            "at": self.at,
            "count": self.count,
            "head": self.head,
            "head_id": self.head_id,
            "key": self.key,
            "v": 1,
        }

    def _signed(self) -> bytes:
        body = json.dumps(self._fields(), sort_keys=True, separators=(",", ":"))
        # A distinct label: a checkpoint's signature can never pass for an event's hash.
        return b"portal audit checkpoint v1\x1f" + body.encode()

    def line(self) -> str:
        return json.dumps({**self._fields(), "sig": self.sig}, sort_keys=True)

    @property
    def when(self) -> str:
        return datetime.fromisoformat(self.at).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_checkpoint() -> Checkpoint:
    """Sign the chain's current length and head with the newest audit key."""
    _lock_chain()  # the count and the head from the same moment of the chain
    count = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    head = db.session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    signing = chain_keys()[0]
    unsigned = Checkpoint(
        count=count,
        head_id=head.id if head else 0,
        head=head.hash if head else GENESIS,
        at=clock.now().astimezone(UTC).isoformat(timespec="seconds"),
        key=signing.id,
    )
    sig = hmac.new(signing.raw, unsigned._signed(), hashlib.sha256).hexdigest()
    return replace(unsigned, sig=sig)


def parse_checkpoint(line: str) -> Checkpoint:
    """A checkpoint line as written by `portal audit checkpoint`, its signature checked."""
    try:
        data = json.loads(line)
        checkpoint = Checkpoint(
            count=int(data["count"]),
            head_id=int(data["head_id"]),
            head=str(data["head"]),
            at=str(data["at"]),
            key=str(data["key"]),
            sig=str(data["sig"]),
        )
        datetime.fromisoformat(checkpoint.at)
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditError("it is not a checkpoint line") from exc
    keys = {k.id: k for k in chain_keys()}
    key = keys.get(checkpoint.key)
    if key is None:
        raise AuditError(f"it was signed with audit key {checkpoint.key}, not in PORTAL_AUDIT_KEYS")
    expected = hmac.new(key.raw, checkpoint._signed(), hashlib.sha256).hexdigest()
    # Constant-time: the signature is what stops a forged checkpoint.
    if not hmac.compare_digest(expected, checkpoint.sig):
        raise AuditError("its signature is wrong (it was changed, or forged)")
    return checkpoint


def newest_checkpoint(path: str | Path) -> Checkpoint | None:
    """The last line of an anchor file (read from its end), or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        lines = [ln for ln in handle.read().splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        return parse_checkpoint(lines[-1].decode("utf-8", "replace"))
    except AuditError as exc:
        raise AuditError(f"The newest checkpoint in {path} is not valid: {exc}.") from exc


def append_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Add the checkpoint as one line at the end of the anchor file (never rewriting it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(checkpoint.line() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def mail_checkpoint(checkpoint: Checkpoint) -> None:
    """Queue the checkpoint to the alert address: once delivered, it is out of the database."""
    from portal.mail.compose import compose_alert
    from portal.services import outbox

    outbox.queue_message(
        compose_alert,
        to=current_app.config["ALERT_EMAIL"],
        locale="en",  # the response team reads alerts in English
        dedupe_key=f"audit:checkpoint:{checkpoint.count}:{checkpoint.head[:16]}",
        subject=f"Audit checkpoint: {checkpoint.count} events",
        text=(
            f"The audit trail held {checkpoint.count} events at {checkpoint.when}. Keep this "
            "message: `portal audit verify --anchor '<the line below>'` checks that none of "
            "them was removed since.\n\n" + checkpoint.line()
        ),
    )


def mail_broken_chain(report: ChainReport) -> None:
    """Tell the operators at once that the trail no longer verifies."""
    from portal.mail.compose import compose_alert
    from portal.services import outbox

    outbox.queue_message(
        compose_alert,
        to=current_app.config["ALERT_EMAIL"],
        locale="en",  # the response team reads alerts in English
        dedupe_key=f"audit:broken:{clock.now():%Y%m%d%H}",
        subject="The audit trail does not verify",
        text=f"`portal audit verify` reports: {report.summary()} Investigate before anything else.",
    )


# --- verification ---


@dataclass
class Segment:
    key: str
    first: int
    last: int
    count: int = 0


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""
    missing: int = 0
    segments: list[Segment] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    anchor_error: str = ""  # the newest checkpoint could not be trusted

    @property
    def broken(self) -> bool:
        return self.broken_at is not None or self.missing > 0 or bool(self.anchor_error)

    def summary(self) -> str:
        if self.anchor_error:
            return f"Broken: {self.anchor_error}"
        if self.broken_at is not None:
            return (
                f"Broken at event {self.broken_at}: {self.reason} "
                f"({self.checked} events before it are intact)."
            )
        if self.missing:
            return (
                f"Broken: {self.missing} {'event' if self.missing == 1 else 'events'} missing "
                f"since the checkpoint of "
                f"{self.checkpoint.when} ({self.checkpoint.count} events then, "
                f"{self.checked} now)."
            )
        return f"The audit chain is intact ({self.checked} events)."


def verify_anchored() -> ChainReport:
    """Verify the chain against the newest checkpoint in PORTAL_AUDIT_ANCHOR_FILE, if any."""
    path = current_app.config["AUDIT_ANCHOR_FILE"]
    try:
        checkpoint = newest_checkpoint(path) if path else None
    except AuditError as exc:
        return ChainReport(0, anchor_error=str(exc))
    return verify_chain(checkpoint=checkpoint)


def verify_chain(batch_size: int = 5000, checkpoint: Checkpoint | None = None) -> ChainReport:
    """Walk the chain in order and name the first event whose link or signature is wrong; with a
    checkpoint, also the events it counted that are gone (a deleted tail, a wiped table)."""
    keys = chain_keys()
    by_id = {k.id: k.raw for k in keys}
    legacy = _legacy_keys(keys)
    report = ChainReport(0, checkpoint=checkpoint)
    prev = GENESIS
    newer_seen = False
    last_id = 0

    def broken(event: AuditEvent, reason: str) -> ChainReport:
        report.broken_at, report.reason = event.id, reason
        return report

    while True:
        events = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > last_id)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not events:
            break
        for event in events:
            # Constant time like every other hash check here: the chain's links are HMACs.
            if not hmac.compare_digest(event.prev_hash.encode(), prev.encode()):
                return broken(event, "does not follow the event before it")
            if event.key_id == LEGACY:
                # A legacy key may be an old signing key, retired because it leaked: it must
                # not be able to add events after the chain moved on to its own keys.
                if newer_seen:
                    return broken(event, "it claims the legacy format after newer events")
                # Legacy hashes do not cover the address: legacy events have none.
                intact = not event.client_addr and any(
                    hmac.compare_digest(_digest(k, event), event.hash) for k in legacy
                )
                if not intact:
                    return broken(
                        event,
                        "its contents were changed (or the legacy key is not in "
                        "PORTAL_AUDIT_KEYS: see `portal audit legacy-key`)",
                    )
            else:
                newer_seen = True
                raw = by_id.get(event.key_id)
                if raw is None:
                    return broken(
                        event, f"it was signed with audit key {event.key_id}, not configured"
                    )
                if not hmac.compare_digest(_digest(raw, event), event.hash):
                    return broken(event, "its contents were changed")
            report.checked += 1
            at_checkpoint = checkpoint is not None and report.checked == checkpoint.count
            if at_checkpoint and not hmac.compare_digest(event.hash, checkpoint.head):
                return broken(
                    event, f"it is not the head recorded at the checkpoint of {checkpoint.when}"
                )
            if report.segments and report.segments[-1].key == event.key_id:
                report.segments[-1].last = event.id
                report.segments[-1].count += 1
            else:
                report.segments.append(Segment(event.key_id, event.id, event.id, 1))
            prev = event.hash
            last_id = event.id
        db.session.expunge_all()
    if checkpoint and report.checked < checkpoint.count:
        report.missing = checkpoint.count - report.checked
    return report


@dataclass
class Page:
    events: list[AuditEvent]
    page: int
    pages: int


def search(
    *,
    actor: str = "",
    action: str = "",
    subject: str = "",
    since=None,
    until=None,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Events matching the filters, newest first (text filters match the start of a value)."""
    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor.startswith(actor, autoescape=True))
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if subject:
        query = query.where(AuditEvent.subject_id.startswith(subject, autoescape=True))
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    events = db.session.scalars(
        query.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(list(events), page, pages)
