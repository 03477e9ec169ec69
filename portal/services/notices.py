"""Notices: queue one personal 'Notice of Data Breach' per affected customer, exactly once."""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import force_locale, format_decimal
from flask_babel import gettext as _
from sqlalchemy import bindparam, exists, func, insert, select, text

from portal import clock, regions, unit_of_work
from portal.extensions import db, vault
from portal.i18n import language_for
from portal.mail.compose import Composed, compose_notice
from portal.mail.mime import slot
from portal.models import DATA_CLASSES, Customer, Exposure, Incident, Notice, OutboxMessage
from portal.models.sealed import context
from portal.services import (
    audit,
    background,
    guidance,
    outbox,
    protection,
    reference_codes,
    runs,
    statements,
    tokens,
)
from portal.services.background import Later, Progress, job

BATCH_SIZE = 5000

# The customers an incident touched, a batch at a time, by the exposure index (incident,
# customer): a keyset from the last customer of the batch before, so that a batch never reads
# the customers already passed (a rerun skips the notified ones by uq_notice_once).
_NEXT_CUSTOMERS = (
    select(Exposure.customer_id)
    .where(
        Exposure.incident_id == bindparam("incident_id"),
        Exposure.customer_id > bindparam("after"),
    )
    .group_by(Exposure.customer_id)
    .order_by(Exposure.customer_id)
    .limit(bindparam("limit"))
)
_UNNOTIFIED_EXPOSURES = (
    select(
        Customer.id,
        Customer.public_id,
        Customer.email_sealed,
        Customer.locale,
        Customer.region,
        Exposure.data_class,
        Exposure.fragment_sealed,
    )
    .join(Customer, Customer.id == Exposure.customer_id)
    .where(
        Exposure.incident_id == bindparam("incident_id"),
        Exposure.customer_id > bindparam("after"),
        Exposure.customer_id <= bindparam("last"),
        # The same range on each table, so that the planner reads each by its index over the
        # batch's stretch (it would hash a whole table to join a few thousand rows otherwise).
        Customer.id > bindparam("after"),
        Customer.id <= bindparam("last"),
        ~exists().where(
            Notice.customer_id == Exposure.customer_id,
            Notice.incident_id == bindparam("incident_id"),
            Notice.customer_id > bindparam("after"),
            Notice.customer_id <= bindparam("last"),
        ),
    )
    .order_by(Exposure.customer_id)
)

# PostgreSQL: a batch's notices and their messages in one statement (one transaction, one round
# trip). Each column of ids and codes comes as one delimited string (splitting text is the
# cheapest way in: the values are ids and codes, none holds a comma); the sealed values come as
# one binary string, each notice's recipient then body, cut at the offsets given (as hex in a
# delimited string they cost the portal 1 µs and the server 3 µs a value to encode and decode;
# as a bytea[] array, more). Each notice's id is drawn first, so its message names it without a
# join, and the outbox row is written with its notice or not at all. The subject and language of
# a message are its template's.
_INSERT_BATCH = text(
    """
    WITH batch AS (
        -- notice_id_seq: the serial of notice.id (the initial migration's); named here, not
        -- looked up per row (that cost more than the rest of the notice's values).
        SELECT nextval('notice_id_seq') AS notice_id, public_id, customer_id, reference_code,
               link_nonce, message_id, template_id,
               -- A recipient's length 0: no email on file (a sealed value is never empty).
               CASE WHEN recipient_length > 0
                    THEN substring(CAST(:sealed AS bytea) FROM sealed_at FOR recipient_length)
               END AS recipient_sealed,
               CASE WHEN recipient_length > 0
                    THEN substring(CAST(:sealed AS bytea) FROM sealed_at + recipient_length
                                   FOR body_length)
               END AS body_sealed
        FROM unnest(
            string_to_array(:public_id, ','), string_to_array(:customer_id, ',')::integer[],
            string_to_array(:reference_code, ','), string_to_array(:link_nonce, ','),
            string_to_array(:message_id, ','), string_to_array(:template_id, ',')::integer[],
            string_to_array(:sealed_at, ',')::integer[],
            string_to_array(:recipient_length, ',')::integer[],
            string_to_array(:body_length, ',')::integer[]
        ) AS batch(public_id, customer_id, reference_code, link_nonce, message_id, template_id,
                   sealed_at, recipient_length, body_length)
        -- In the order of the public ids (random): the unique indexes of notice.public_id and
        -- outbox_message.dedupe_key ('notice:' || public_id) then take the batch in key order
        -- (a tenth less server CPU a notice than in random order, measured on bare inserts).
        ORDER BY public_id
    ), notices AS (
        INSERT INTO notice (id, public_id, customer_id, incident_id, reference_code, link_nonce,
                            queued_at)
        SELECT notice_id, public_id, customer_id, :incident_id, reference_code, link_nonce,
               CASE WHEN recipient_sealed IS NULL THEN NULL ELSE CAST(:now AS timestamptz) END
        FROM batch
    )
    INSERT INTO outbox_message (kind, dedupe_key, message_id, recipient_sealed, subject,
                                body_sealed, locale, status, attempts, next_attempt_at,
                                last_error, notice_id, template_id, created_at)
    SELECT 'email', 'notice:' || batch.public_id, batch.message_id, batch.recipient_sealed,
           outbox_template.subject, batch.body_sealed, outbox_template.locale, 'queued', 0,
           :now, '', batch.notice_id, batch.template_id, :now
    FROM batch JOIN outbox_template ON outbox_template.id = batch.template_id
    -- No email on file: the notice alone, for a printed letter.
    WHERE batch.recipient_sealed IS NOT NULL
    """
)


# The same statement for psycopg itself (named parameters in its own style; the casts keep
# their double colon), run with binary parameters (see _inserting).
_INSERT_BATCH_DRIVER = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", _INSERT_BATCH.text)


def _columns(batch: _Batch) -> dict[str, str | bytes]:
    """The batch as _INSERT_BATCH takes it: each column one comma-separated string, the sealed
    values one string of bytes (each notice's recipient, then its body) with their places."""
    sealed_at, recipient_length, body_length = [], [], []
    at = 1  # substring counts from 1
    for recipient, body in zip(batch.recipient_sealed, batch.body_sealed, strict=True):
        sealed_at.append(str(at))
        if recipient is None:
            recipient_length.append("0")  # no email on file: no message (see _INSERT_BATCH)
            body_length.append("0")
        else:
            recipient_length.append(str(len(recipient)))
            body_length.append(str(len(body)))
            at += len(recipient) + len(body)
    return {
        "public_id": ",".join(batch.public_id),
        "customer_id": ",".join(map(str, batch.customer_id)),
        "reference_code": ",".join(batch.reference_code),
        "link_nonce": ",".join(batch.link_nonce),
        "message_id": ",".join(batch.message_id),
        "template_id": ",".join(map(str, batch.template_id)),
        "sealed": b"".join(
            blob
            for pair in zip(batch.recipient_sealed, batch.body_sealed, strict=True)
            if pair[0] is not None
            for blob in pair
        ),
        "sealed_at": ",".join(sealed_at),
        "recipient_length": ",".join(recipient_length),
        "body_length": ",".join(body_length),
    }


@dataclass
class _Batch:
    """The columns of a batch's notices and messages, one list per column."""

    public_id: list[str] = field(default_factory=list)
    customer_id: list[int] = field(default_factory=list)
    reference_code: list[str] = field(default_factory=list)
    link_nonce: list[str] = field(default_factory=list)
    dedupe_key: list[str] = field(default_factory=list)
    message_id: list[str] = field(default_factory=list)
    # None for a person with no email on file: a notice without a message.
    recipient_sealed: list[bytes | None] = field(default_factory=list)
    body_sealed: list[bytes | None] = field(default_factory=list)
    template_id: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.public_id)


def _fresh_reference_codes(count: int, *, postgres: bool, avoid=frozenset()) -> list[str]:
    """Codes not yet used by any notice (a collision is rare, but a code must be unique), nor
    in `avoid` (the batch before, not yet written while this one is prepared)."""
    codes: set[str] = set()
    while len(codes) < count:
        wanted = set(reference_codes.generate_many(count - len(codes))) - codes - avoid
        if postgres:  # one text parameter, not one bind parameter per code
            taken = db.session.scalars(_TAKEN_CODES, {"codes": ",".join(wanted)})
        else:
            taken = db.session.scalars(
                select(Notice.reference_code).where(Notice.reference_code.in_(wanted))
            )
        codes |= wanted - set(taken)
    return list(codes)


_TAKEN_CODES = text(
    "SELECT reference_code FROM notice WHERE reference_code = ANY(string_to_array(:codes, ','))"
)


class Variants:
    """The notice rendered once per variant: its language, the data types it lists, which of
    them show a masked fragment. What differs per person (the link, the reference code, the
    fragments) is a slot, filled by the worker when it sends (portal.mail.mime)."""

    def __init__(self, incident: Incident):
        self.incident = incident
        self.sender = current_app.config["MAIL_FROM"]
        self.templates: dict[tuple, tuple[int, str]] = {}
        self.subjects: dict[int, tuple[str, str]] = {}  # template id -> (subject, locale)
        # (locale, region, shown) -> the variant's key: a million rows, a few hundred readings
        self.keys: dict[tuple, tuple] = {}
        offer = protection.offer_for(incident.id)
        # A closed offer is not put in a notice: nobody could take it up any more.
        self.offer = offer if offer is not None and not protection.is_closed(offer) else None
        self.notice_date = clock.now().date()
        self._affected: int | None = None
        self._prepared: dict[tuple, tuple[int, str, list[int]]] = {}

    def template(
        self, locale: str, shown: tuple[tuple[str, bool], ...], region: str = ""
    ) -> tuple[int, str]:
        """(id, digest) of the template for this variant."""
        key = self._key(locale, shown, region)
        found = self.templates.get(key)
        if found is None:
            composed = self.compose(locale, shown, region)
            template_id, digest = outbox.template(
                sender=self.sender,
                subject=composed.subject,
                locale=locale,
                text=composed.text,
                html=composed.html,
            )
            found = self.templates[key] = (template_id, digest)
            self.subjects[template_id] = (outbox.one_line(composed.subject), locale)
        return found

    def prepared(
        self, locale: str, region: str, found: list[tuple[str, str | None]], issued_at: int
    ) -> tuple[int, str, list[int]]:
        """For a person's exposures as read (data class, fragment): their template's id, the
        start of their templated body up to the code, and which of `found` fill the fragment
        slots f0, f1... (variant_of's work, done once per variant of a run, not per person)."""
        asked = (locale, region, issued_at, tuple((key, bool(f)) for key, f in found))
        hit = self._prepared.get(asked)
        if hit is None:
            order = sorted(range(len(found)), key=lambda n: sensitivity_order(found[n]))
            shown, _values = variant_of([found[n] for n in order])
            template_id, digest = self.template(locale, shown, region)
            start = outbox.templated_body(
                template=digest, issued_at=issued_at, values={"code": ""}, links={}
            ).decode()
            # up to the code's value: '{"template":"...","issued_at":N,"values":{"code":"'
            start = start[: start.index('"values":{"code":"') + len('"values":{"code":"')]
            slots = [n for n, (_key, has) in zip(order, shown, strict=True) if has]
            hit = self._prepared[asked] = (template_id, start, slots)
        return hit

    def _key(self, locale: str, shown: tuple[tuple[str, bool], ...], region: str) -> tuple:
        """What decides the text: the language, the data types, and of the place of residence
        only what it changes (which statements, which region-limited steps, the offer), so that
        fifty states with the same law share one rendering."""
        asked = (locale, region, shown)
        key = self.keys.get(asked)
        if key is None:
            language = language_for(locale)
            keys = {data_class for data_class, _f in shown}
            inserts = statements.for_reader(region, language, keys)
            key = self.keys[asked] = (
                locale,
                shown,
                inserts.key,
                guidance.region_key(region, language),
                self._offered(keys, region),
            )
        return key

    def _offered(self, keys: set[str], region: str) -> bool:
        offer = self.offer
        return (
            offer is not None
            and protection.covers(offer, keys)
            and regions.within(region, offer.region_list)
        )

    def compose(
        self,
        locale: str,
        shown: tuple[tuple[str, bool], ...],
        region: str = "",
        *,
        values: dict[str, str] | None = None,
    ) -> Composed:
        """The variant's message with slots for the link, the code and the fragments f0, f1...
        (or, given their `values`, one person's message made whole, as the worker fills it)."""
        values = values or {}
        slots = iter(range(len(shown)))
        exposures = []
        for data_class, has_fragment in shown:
            name = f"f{next(slots)}" if has_fragment else None
            exposures.append((data_class, values.get(name, slot(name)) if name else None))
        keys = {data_class for data_class, _f in shown}
        language = language_for(locale)
        # The recipient's language, as queue_message sets it for every other message.
        with force_locale(language):
            inserts = statements.for_reader(region, language, keys)
            placeholders = statements.values_for(
                self.incident,
                current_app.config["ORGANISATION_NAME"],
                statements.contact_for(self.incident, language),
                affected_count=(
                    format_decimal(self.affected())
                    if "affected_count" in inserts.placeholders
                    else ""
                ),
            )
            return compose_notice(
                incident=self.incident,
                exposures=exposures,
                link=values.get("link", slot("link")),
                reference_code=values.get("code", slot("code")),
                steps=partial(guidance.step_titles, keys, region=region),
                offer=self.offer if self._offered(keys, region) else None,
                notice_date=self.notice_date,
                statements=inserts.filled(placeholders),
                omit=inserts.omit,
            )

    def affected(self) -> int:
        """How many people the incident affected (Rhode Island's notice says), counted once."""
        if self._affected is None:
            self._affected = campaign(self.incident).affected
        return self._affected


def variant_of(
    found: list[tuple[str, str | None]],
) -> tuple[tuple[tuple[str, bool], ...], dict[str, str]]:
    """A person's exposures (data class, fragment) as their notice's variant (each data class,
    most sensitive first, and whether it shows a masked fragment) and the fragments' slot values."""
    found = sorted(found, key=sensitivity_order)
    shown = tuple(
        (key, bool(fragment) and DATA_CLASSES[key].fragment_label is not None)
        for key, fragment in found
    )
    fragments = (f for (_k, f), (_k2, has) in zip(found, shown, strict=True) if has)
    return shown, {f"f{n}": fragment for n, fragment in enumerate(fragments)}


def sensitivity_order(exposure: tuple[str, str | None]) -> tuple[int, str]:
    return (-DATA_CLASSES[exposure[0]].sensitivity, exposure[0])


# base64's URL-safe alphabet, as secrets.token_urlsafe writes it.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _token(randomness: bytes, at: int) -> str:
    """secrets.token_urlsafe(16) of the 16 random bytes at `at`: 22 characters, no padding."""
    return (
        binascii.b2a_base64(randomness[at : at + 16], newline=False)[:22]
        .translate(_URL_SAFE)
        .decode()
    )


def _prepare(
    incident: Incident, by_customer: dict, codes: list[str], variants: Variants, issued_at: int
) -> _Batch:
    """The batch's columns: each customer's notice and message, sealed for their rows.

    The per-person work of a million: no query, no rendering; four or five AES-GCM operations.
    by_customer: each customer's rows of _UNNOTIFIED_EXPOSURES (read by position).
    """
    batch = _Batch()
    host = urlsplit(current_app.config["BASE_URL"]).hostname
    # Each sealed value's place (sealed.context) is its column's prefix and its row's binding:
    # the prefixes come from the models' declarations, once per batch.
    email_at = context(Customer, "email_sealed", "").encode()
    fragment_at = context(Exposure, "fragment_sealed", "").encode()
    recipient_at = context(OutboxMessage, "recipient_sealed", "").encode()
    body_at = context(OutboxMessage, "body_sealed", "").encode()
    # The bulk sealer: the same sealed format with the key looked up once, contexts as bytes
    # (two seals and one or more opens a notice).
    sealer = vault.bulk()
    open_, seal = sealer.open, sealer.seal
    incident_at = f".{incident.id}.".encode()  # Exposure.binding's middle
    link_purpose = json.dumps(tokens.Purpose.NOTICE_LINK.value)
    # The batch's random ids from one read of the OS's CSPRNG, not four reads a notice (the
    # public id, the link nonce and the Message-ID each as secrets.token_urlsafe(16) or
    # make_msgid would make them): 48 bytes a notice, each used once.
    randomness = os.urandom(48 * len(by_customer))
    at = 0
    for (customer_id, exposures), code in zip(by_customer.items(), codes, strict=True):
        # _UNNOTIFIED_EXPOSURES' columns: id, public_id, email_sealed, locale, region,
        # data_class, fragment_sealed
        first = exposures[0]
        customer_public_id = first[1]
        pid = customer_public_id.encode()
        found = [
            (
                exposure[5],
                None
                if exposure[6] is None
                else open_(
                    exposure[6], fragment_at + pid + incident_at + exposure[5].encode()
                ).decode(),
            )
            for exposure in exposures
        ]
        prepared = variants.prepared(first[3], first[4] or "", found, issued_at)
        template_id, body_start, slots = prepared
        public_id, nonce = _token(randomness, at), _token(randomness, at + 16)
        # A unique Message-ID (RFC 5322: unique, id-left@id-right): 128 random bits in hex.
        message_id = f"<{randomness[at + 32 : at + 48].hex()}@{host}>"
        at += 48
        dedupe_key = f"notice:{public_id}"
        batch.public_id.append(public_id)
        batch.customer_id.append(customer_id)
        batch.reference_code.append(code)
        batch.link_nonce.append(nonce)
        batch.dedupe_key.append(dedupe_key)
        batch.message_id.append(message_id)
        if first[2] is None:
            # No email on file: the notice (its reference code) is made, no message is queued;
            # the letters' `no_email` rule puts the person on the list for a printed one.
            batch.recipient_sealed.append(None)
            batch.body_sealed.append(None)
        else:
            # outbox.templated_body's bytes (a test holds it to them), from the variant's start:
            # the rest are the code (its display form: 12 characters of the alphabet), the
            # fragments (JSON strings) and the link's ids (URL-safe base64: nothing to escape).
            body = "".join(
                (
                    body_start,
                    code[:4],
                    "-",
                    code[4:8],
                    "-",
                    code[8:],
                    '"',
                    *[f',"f{n}":{json.dumps(found[i][1])}' for n, i in enumerate(slots)],
                    '},"links":{"link":[',
                    link_purpose,
                    ',"',
                    public_id,
                    '","',
                    nonce,
                    '"]}}',
                )
            ).encode()
            email = open_(first[2], email_at + pid)
            bound = dedupe_key.encode()
            batch.recipient_sealed.append(seal(email, recipient_at + bound))
            batch.body_sealed.append(seal(body, body_at + bound))
        batch.template_id.append(template_id)
    return batch


def queue_notices(
    incident: Incident,
    *,
    actor: str,
    batch_size: int = BATCH_SIZE,
    progress=None,
) -> int:
    """Create a Notice and its outbox message for every affected customer not yet notified.

    Each batch commits its notices together with their messages, so a notice is never marked
    queued without its message, nor a message queued twice: running it again sends nothing new.
    Another run for the same incident under way: raise runs.Busy before queueing anything.
    """
    # Two runs at once would pick the same customers and insert their notices twice (the loser
    # died on uq_notice_once half-way). Held on a connection of its own: batches commit.
    with runs.held(runs.NOTICES, incident.id):
        return _queue_notices(incident, actor=actor, batch_size=batch_size, progress=progress)


def _queue_notices(incident: Incident, *, actor: str, batch_size: int, progress) -> int:
    queued = 0
    variants = Variants(incident)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    pending: tuple[_Batch, object] | None = None  # prepared, not yet written (PostgreSQL)
    with contextlib.ExitStack() as stack:
        # PostgreSQL, once a batch is kept: a connection of its own reads the batch after next
        # while the session's writes the one before (the server's two processes at once).
        reader = None
        ahead = _read_batch(incident.id, 0, batch_size, postgres=postgres)
        while True:
            last, by_customer = ahead
            ahead = None
            avoid = frozenset(pending[0].reference_code) if pending else frozenset()
            codes = _fresh_reference_codes(len(by_customer), postgres=postgres, avoid=avoid)
            now = clock.now()
            if pending is not None:
                # PostgreSQL writes the batch before while this one is prepared (the two cores
                # work at once: the server on the INSERT, this process on the sealing), then it
                # is kept.
                with _inserting(pending[1]):
                    batch = _prepare(incident, by_customer, codes, variants, int(now.timestamp()))
                    if reader is not None and last is not None:
                        # The stretch after this one: no notice of it is being written, and
                        # every one written before is committed, so the reader sees it whole.
                        ahead = _read_batch(incident.id, last, batch_size, connection=reader)
                queued = _kept(incident, pending[0], actor=actor, queued=queued, progress=progress)
                pending = None
                if reader is None:
                    # Only now: what the session held before the run (customers imported in
                    # the same transaction) is committed with the first batch, so another
                    # connection sees it.
                    reader = stack.enter_context(db.engine.connect())
            elif by_customer:
                batch = _prepare(incident, by_customer, codes, variants, int(now.timestamp()))
            if last is None:
                break
            if ahead is None:
                ahead = _read_batch(incident.id, last, batch_size, postgres=postgres)
            if not by_customer:
                continue  # every customer of this stretch was notified by an earlier run
            if postgres:
                pending = (batch, {**_columns(batch), "incident_id": incident.id, "now": now})
                continue
            _insert_batch(incident, batch, now, variants.subjects)
            queued = _kept(incident, batch, actor=actor, queued=queued, progress=progress)
    if queued:
        outbox.after_bulk_queue()
    return queued


def _read_batch(
    incident_id: int, after: int, batch_size: int, *, postgres: bool = True, connection=None
) -> tuple[int | None, dict[int, list]]:
    """The stretch of customers after `after`: its last customer's id (None: no more) and each
    customer's rows of _UNNOTIFIED_EXPOSURES not yet notified. On `connection` (PostgreSQL),
    else on the session."""
    found = _rows(
        _NEXT_CUSTOMERS,
        {"incident_id": incident_id, "after": after, "limit": batch_size},
        postgres=postgres,
        connection=connection,
    )
    by_customer: dict[int, list] = {}
    if not found:
        return None, by_customer
    last = found[-1][0]
    rows = _rows(
        _UNNOTIFIED_EXPOSURES,
        {"incident_id": incident_id, "after": after, "last": last},
        postgres=postgres,
        connection=connection,
    )
    if connection is not None:
        connection.rollback()  # read only: no transaction left open between batches
    for row in rows:
        by_customer.setdefault(row[0], []).append(row)
    return last, by_customer


_driver_sql: dict = {}


def _rows(statement, params: dict, *, postgres: bool, connection=None) -> list:
    """The statement's rows, as tuples; on PostgreSQL straight from psycopg in its binary
    format, on `connection` or in the session's transaction (a batch reads 15,000 exposure
    rows: SQLAlchemy's result rows and column types cost more than the rest of the read)."""
    if not postgres:
        return db.session.execute(statement, params).all()
    sql = _driver_sql.get(statement)
    if sql is None:
        sql = _driver_sql[statement] = str(statement.compile(dialect=db.session.get_bind().dialect))
    driver = (connection or db.session.connection()).connection.driver_connection
    return driver.execute(sql, params, binary=True).fetchall()


def _kept(incident: Incident, batch: _Batch, *, actor: str, queued: int, progress) -> int:
    """Keep a written batch: its audit event, then its commit. The count queued so far."""
    audit.record(
        "notices.queued",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"count": len(batch)},
    )
    # Each batch is kept as it finishes, its notices with their messages, so a rerun carries
    # on from here; nothing of it stays in the session, so memory stays flat.
    if not queued:
        # Workers start on the first batch while the rest is queued: they claim by the due
        # index only once the planner knows the queue is no longer empty.
        outbox.after_bulk_queue()
    unit_of_work.checkpoint()
    queued += len(batch)
    if progress is not None:
        progress(queued)
    return queued


@contextlib.contextmanager
def _inserting(params: dict):
    """Run _INSERT_BATCH with `params` in the session's transaction while the block runs.

    Why a thread: the statement waits on the server (the GIL is released meanwhile), so the
    next batch's Python work overlaps it instead of following it. It is the session's own
    connection and transaction (psycopg serialises the connection's use by its own lock, so a
    query the block makes meanwhile waits its turn), so the batch is still kept or lost whole
    with its audit event, by the caller's checkpoint after this returns.
    """
    driver = db.session.connection().connection.driver_connection
    failed: list[BaseException] = []

    def insert() -> None:
        try:
            # Binary: the arrays' values go as they are, sealed bytes as bytes.
            driver.execute(_INSERT_BATCH_DRIVER, params, binary=True)
        except BaseException as error:  # handed to the caller's thread below
            failed.append(error)

    writer = threading.Thread(target=insert, name="notices-insert")
    writer.start()
    try:
        yield
    finally:
        writer.join()  # never leave the statement running under a rollback or the next query
        if failed:
            # The cause first: a query of the block meanwhile only saw the aborted transaction.
            raise failed[0]


def _insert_batch(incident: Incident, batch: _Batch, now, subjects: dict) -> None:
    """SQLite: the batch's notices, then their messages by the notices' new ids, in the
    caller's transaction (SQLite has one writer at a time: both land together or not at all)."""
    notice_rows = [
        {
            "public_id": public_id,
            "customer_id": customer_id,
            "incident_id": incident.id,
            "reference_code": code,
            "link_nonce": nonce,
            # Queued by email only when there is an email to queue it to.
            "queued_at": now if recipient is not None else None,
        }
        for public_id, customer_id, code, nonce, recipient in zip(
            batch.public_id,
            batch.customer_id,
            batch.reference_code,
            batch.link_nonce,
            batch.recipient_sealed,
            strict=True,
        )
    ]
    ids = dict(
        db.session.execute(
            insert(Notice).returning(Notice.public_id, Notice.id, sort_by_parameter_order=True),
            notice_rows,
        ).all()
    )
    messages = [
        {
            "kind": "email",
            "dedupe_key": batch.dedupe_key[n],
            "message_id": batch.message_id[n],
            "recipient_sealed": batch.recipient_sealed[n],
            "subject": subjects[batch.template_id[n]][0],
            "body_sealed": batch.body_sealed[n],
            "locale": subjects[batch.template_id[n]][1],
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "notice_id": ids[batch.public_id[n]],
            "template_id": batch.template_id[n],
            "created_at": now,
        }
        for n in range(len(batch))
        if batch.recipient_sealed[n] is not None
    ]
    if messages:  # (an empty list would make it one INSERT of nothing but defaults)
        db.session.execute(insert(OutboxMessage), messages)


class CampaignChanged(Exception):
    """The count the admin confirmed is no longer the count to send; nothing was started."""


def start_campaign(incident: Incident, *, expected: int, actor: str):
    """Start the campaign the admin confirmed, counts and all (the console's job)."""
    figures = campaign(incident)
    # They confirmed a count per language and region: if an import changed it since, they
    # confirm again rather than send to people they did not see counted.
    if figures.affected - figures.notified != expected:
        raise CampaignChanged(
            _("The numbers changed since you looked. Check them and confirm again.")
        )
    from portal.services import approvals, notice_preview

    # Four eyes: legal approved these exact messages and counts (or two admins overrode it).
    content = notice_preview.pinned(incident)
    approval = None
    if content["total"]:  # nobody waiting: nothing goes out, nothing to approve
        approval = approvals.require("campaign", incident.slug, content)
    return background.submit(
        "send_notices",
        {
            "incident_id": incident.id,
            "actor": actor,
            "total": expected,
            "affected": figures.affected,
            "approval_id": approval.id if approval is not None else None,
        },
        actor=actor,
    )


def _still_approved(incident: Incident, approval_id: int | None) -> bool:
    """Whether the words legal approved are still the incident's words, where the job starts.

    An edit between the admin's Send and the worker's start would otherwise go out unapproved.
    The words, not the whole pinned content: the counts still to send fall as the job queues,
    and a job run again after a crash must still finish."""
    from portal.models import Approval
    from portal.services import approvals, notice_preview

    if approval_id is None:
        return True  # nobody was waiting when it was started: it queues nothing new unseen
    approval = db.session.get(Approval, approval_id)
    if approval is None or approval.state not in approvals.COVERING:
        return False  # superseded: somebody asked approval for a changed campaign since
    return json.loads(approval.pinned).get("texts") == notice_preview.incident_texts(incident)


@job("send_notices")
def _send_notices_job(payload: dict, progress: Progress) -> dict:
    """Job: the campaign an admin started from the console."""
    incident = db.session.get(Incident, payload["incident_id"])
    # The same check where the job starts: an import may have run while it waited. (Not the
    # count still to send: a job run again after a crash has sent some of it already.)
    if "affected" in payload and campaign(incident).affected != payload["affected"]:
        return {"queued": 0, "changed": True}
    if not _still_approved(incident, payload.get("approval_id")):
        return {"queued": 0, "unapproved": True}
    try:
        count = queue_notices(
            incident,
            actor=payload["actor"],
            progress=lambda n: progress(n, payload.get("total", 0)),
        )
    except runs.Busy:
        # Another campaign run for this incident: this job goes after it, and then queues what is
        # left (the worker is not parked in a wait meanwhile).
        raise Later() from None
    return {"queued": count}


@dataclass(frozen=True)
class Campaign:
    affected: int
    notified: int
    sent: int
    failed: int
    opened: int
    verified: int


def affected_count(incident_id: int):
    """A scalar subquery: how many customers the incident touched."""
    return (
        select(func.count(func.distinct(Exposure.customer_id)))
        .where(Exposure.incident_id == incident_id)
        .scalar_subquery()
    )


def notice_count(incident_id: int, condition):
    """A scalar subquery: how many of the incident's notices meet the condition."""
    return (
        select(func.count())
        .select_from(Notice)
        .where(Notice.incident_id == incident_id, condition)
        .scalar_subquery()
    )


def campaign(incident: Incident) -> Campaign:
    """Where the notices of an incident stand (one aggregate query)."""

    def notices(condition):
        return notice_count(incident.id, condition)

    row = db.session.execute(
        select(
            affected_count(incident.id),
            notices(Notice.id.is_not(None)),
            notices(Notice.sent_at.is_not(None)),
            select(func.count())
            .select_from(OutboxMessage)
            .join(Notice, Notice.id == OutboxMessage.notice_id)
            .where(Notice.incident_id == incident.id, OutboxMessage.status == "failed")
            .scalar_subquery(),
            notices(Notice.opened_at.is_not(None)),
            notices(Notice.verified_at.is_not(None)),
        )
    ).one()
    return Campaign(*(int(v or 0) for v in row))


def requeue_failed(incident: Incident, *, actor: str) -> int:
    """Try again every notice message of this incident that failed (an address since fixed)."""
    outcome = outbox.requeue_failed(actor=actor, notice_of_incident=incident.id)
    audit.record(
        "notices.requeued",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"count": outcome.requeued},
    )
    return outcome.requeued


def data_classes_involved(incident: Incident) -> list[tuple[str, int]]:
    """The data classes the imports say were involved, most customers first (one query)."""
    rows = db.session.execute(
        select(Exposure.data_class, func.count())
        .where(Exposure.incident_id == incident.id)
        .group_by(Exposure.data_class)
        .order_by(func.count().desc(), Exposure.data_class)
    )
    return [(key, count) for key, count in rows]
