"""Import who was affected: one streamed reading of the file checks every row and upserts the
good ones in batches inside a savepoint, which the first problem anywhere in the file undoes."""

from __future__ import annotations

import csv
import re
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from flask_babel import force_locale
from flask_babel import gettext as _

from portal.extensions import db, vault
from portal.i18n import language_for
from portal.models import DATA_CLASSES, Customer, Exposure, Incident
from portal.models.customer import new_public_ids
from portal.models.sealed import context
from portal.services import audit, runs
from portal.services.background import Later, Progress, job
from portal.validation import (
    Invalid,
    email_address,
    has_invisible,
    is_single_line,
    normalise_postal_code,
    phone_number,
    postal_address_problems,
)

COLUMNS = ("external_id", "full_name", "email", "phone", "locale", "region", "data_classes")
# Columns a file may add after those: whether the person agreed to be notified by email (HIPAA
# notice goes by first-class mail without it, 45 CFR 164.404(d)(1)). Left out or empty: the file
# does not say, and what an earlier file said is kept.
# The postal address for a printed letter (country and state come from `region`): all four
# left empty, the file does not say, and an address an earlier file gave is kept.
ADDRESS_COLUMNS = ("address_line1", "address_line2", "city", "postal_code")
OPTIONAL_COLUMNS = ("email_consent", *ADDRESS_COLUMNS)
ALL_COLUMNS = COLUMNS + OPTIONAL_COLUMNS
_CONSENT = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False}
_CONSENT |= {"false": False, "0": False}
REQUIRED = ("external_id", "full_name", "email", "data_classes")
# A file without the email column is good when it has an address's: a letter reaches them.
ADDRESS_REQUIRED = ("address_line1", "city", "postal_code")
MAX_REPORTED = 50
# Rows a batch: large enough that the per-batch statements cost little, small enough that a
# batch in hand (sealed, and the next one being read) keeps the import under 200 MB at 1 M rows.
BATCH_SIZE = 2000

_LOCALE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2})?$")
_REGION = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$")
_FRAGMENT = re.compile(r"^[A-Za-z0-9]{1,4}$")
# A byte that is not UTF-8 is read as a lone surrogate (errors="surrogateescape") and found
# here, on its own line: strict decoding fails on a whole buffered chunk of the file, and named
# a line far before the real one.
_BAD_BYTE = re.compile("[\udc80-\udcff]")
# How much of the start of a file is looked at to recognise UTF-16.
_SNIFF_BYTES = 4096


@dataclass
class Problem:
    line: int
    reason: str

    def __str__(self) -> str:
        return _("line %(line)d: %(reason)s", line=self.line, reason=self.reason)


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    exposures_added: int = 0
    exposures_updated: int = 0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    # False when reading stopped before the end of the file (a UTF-16 file, a bad header,
    # malformed CSV): `rows` then counts only the rows before that point.
    complete: bool = True

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add_problem(self, line: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(Problem(line, reason))


class ImportRejected(Exception):
    """The file has problems; nothing was written."""

    def __init__(self, report: ImportReport):
        super().__init__(f"{report.problem_count} problem(s) in the file")
        self.report = report


@dataclass(slots=True)
class Row:
    line: int
    external_id: str
    full_name: str
    email: str | None  # None: none given (a postal address reaches the person)
    phone: str | None
    locale: str
    region: str
    exposures: dict[str, str | None]
    email_consent: bool | None = None
    # (line1, line2 or None, city, postal code) or None when the row gives no address.
    address: tuple[str, str | None, str, str] | None = None


# A file holds few different data_classes values (the same few combinations on a million rows):
# each is parsed once. The dicts are shared between rows and only ever read.
_PARSED: dict[str, dict[str, str | None]] = {}
_PARSED_MAX = 4096


def _parse_data_classes(value: str) -> tuple[dict[str, str | None], str | None]:
    """Parse 'payment_card:4242;ssn' into {key: fragment}; return (result, problem)."""
    parsed = _PARSED.get(value)
    if parsed is not None:
        return parsed, None
    result, problem = _parse_data_classes_once(value)
    if problem is None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[value] = result
    return result, problem


def _parse_data_classes_once(value: str) -> tuple[dict[str, str | None], str | None]:
    result: dict[str, str | None] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _sep, fragment = item.partition(":")
        key, fragment = key.strip(), fragment.strip()
        if key not in DATA_CLASSES:
            return result, _("unknown data class %(key)s", key=repr(key)[:40])
        if key in result:
            return result, _("data class %(key)s is listed twice", key=key)
        if fragment:
            if len(fragment) > 4:
                return result, _(
                    "the fragment for %(key)s has more than 4 characters: give at most the "
                    "last 4, never a full number",
                    key=key,
                )
            if not _FRAGMENT.match(fragment):
                return result, _(
                    "the fragment for %(key)s may hold only letters and digits", key=key
                )
        result[key] = fragment or None
    if not result:
        return result, _("data_classes is empty")
    return result, None


def _check_row(line: int, values: list[str]) -> tuple[Row | None, str | None]:
    """Validate one record (values in ALL_COLUMNS order); return the clean Row or why it is
    refused."""
    external_id, full_name, email, phone, locale, region, data_classes, consent = values[:8]
    line1, line2, city, postal_code = values[8:]
    # Invisible and direction-changing characters would make a name look like another one on
    # the staff's pages (or an id read backwards); the C0 and C1 controls end up in headers.
    # (ASCII has none: most rows skip the look.)
    if not (external_id.isascii() and full_name.isascii()):
        for name, value in (("external_id", external_id), ("full_name", full_name)):
            if has_invisible(value):
                return None, _(
                    "%(column)s contains an invisible or direction-changing character",
                    column=name,
                )
    if not (external_id and full_name and data_classes):
        required = (
            ("external_id", external_id),
            ("full_name", full_name),
            ("data_classes", data_classes),
        )
        for name, value in required:
            if not value:
                return None, _("%(column)s is required", column=name)
    if len(external_id) > 128 or not is_single_line(external_id):
        return None, _("external_id must be at most 128 printable characters")
    if len(full_name) > 200 or not is_single_line(full_name):
        return None, _("full_name must be at most 200 printable characters")
    # The same rule as every form's (portal.validation): what /help takes, the file may hold.
    try:
        email = email_address(email) if email else None
    except Invalid:
        return None, _("email is not a valid address")
    try:
        phone = phone_number(phone) if phone else ""
    except Invalid:
        return None, _("phone must be in E.164 form, like +14155550123")
    locale = locale or "en"
    if not _LOCALE.match(locale):
        return None, _("locale must be a language code like en or es")
    if region and not _REGION.match(region):
        return None, _("region must be an ISO 3166 code like US-CA or DE")
    exposures, problem = _parse_data_classes(data_classes)
    if problem:
        return None, problem
    email_consent = _CONSENT.get(consent.lower()) if consent else None
    if consent and email_consent is None:
        return None, _("email_consent must be yes or no (or left empty)")
    address = None
    if line1 or line2 or city or postal_code:
        # The same rule as the letters' (portal.validation): what a mail house accepts.
        problems = postal_address_problems(line1, line2, city, postal_code, region)
        if problems:
            return None, _("postal address: %(problem)s", problem=problems[0])
        address = (line1, line2 or None, city, normalise_postal_code(postal_code))
    elif email is None:
        # Each person must be reachable: by email, or by a letter to a complete address.
        return None, _(
            "email is required when no postal address is given (address_line1, city, postal_code)"
        )
    locale = locale.replace("_", "-")
    row = Row(line, external_id, full_name, email, phone or None, locale, region, exposures)
    row.email_consent = email_consent
    row.address = address
    return row, None


def not_utf8() -> str:
    """The problem reported on a line that holds a byte that is not UTF-8."""
    return _("this line is not UTF-8 text; save the file as CSV UTF-8 and upload it again")


def _check_encoding(path: Path) -> None:
    """Raise ValueError for a file saved as UTF-16 (or UTF-32): every line of it would be
    reported as not UTF-8, when the one thing to do is to save it again."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    # A byte order mark of UTF-16 (FF FE, FE FF), or text that is mostly NUL bytes (UTF-16
    # without a mark: every other byte of Latin text is a NUL). A stray NUL in a UTF-8 file is
    # not this: it is a control character, refused on its own line.
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(0) * 4 >= len(head) > 0:
        raise ValueError(
            _(
                "the file is saved as UTF-16 (Unicode) text, not UTF-8: save it as CSV UTF-8 "
                "and upload it again"
            )
        )


class _Lines:
    """The file's lines as the CSV reader takes them, numbered, noting those with a bad byte."""

    def __init__(self, handle):
        self.handle = handle
        self.number = 0
        self.bad: list[int] = []

    def __iter__(self) -> Iterator[str]:
        for text in self.handle:
            self.number += 1
            # (An ASCII line, most of them, holds none: one C pass says so.)
            if not text.isascii() and _BAD_BYTE.search(text):
                self.bad.append(self.number)
            yield text


def _records(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Stream (line number, stripped values in ALL_COLUMNS order, problem) from the CSV.

    Values are None and the problem says why for a row with more fields than the header or a
    byte that is not UTF-8 (the line named is the one holding that byte). Raises ValueError for
    an unusable file or header.
    """
    _check_encoding(path)
    # utf-8-sig: a file saved as "CSV UTF-8" by a spreadsheet starts with a byte order mark.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines)
        header = [name.strip() for name in next(reader, [])]
        if lines.bad:
            raise ValueError(not_utf8())
        if not header:
            raise ValueError(_("the file is empty"))
        unknown = [name for name in header if name not in ALL_COLUMNS]
        missing = [name for name in REQUIRED if name not in header]
        if "email" in missing and all(name in header for name in ADDRESS_REQUIRED):
            missing.remove("email")
        if missing:
            raise ValueError(_("missing required column(s): %(names)s", names=", ".join(missing)))
        if unknown:
            raise ValueError(_("unknown column(s): %(names)s", names=", ".join(unknown)[:200]))
        if len(set(header)) != len(header):
            raise ValueError(_("a column is named twice in the header"))
        width = len(header)
        positions = [header.index(name) if name in header else None for name in ALL_COLUMNS]
        # The usual header (the columns in order, the optional ones at the end or left out):
        # no reordering, only the left-out optional columns added empty.
        in_order = header == list(ALL_COLUMNS[:width])
        left_out = [""] * (len(ALL_COLUMNS) - width)
        ended = reader.line_num
        for fields in reader:
            # The line a record starts on: a quoted field may span several lines.
            line, ended = ended + 1, reader.line_num
            if lines.bad and lines.bad[-1] >= line:
                yield next(bad for bad in lines.bad if bad >= line), None, not_utf8()
                continue
            if len(fields) > width:
                yield line, None, _("the row has more fields than the header")
                continue
            if in_order and len(fields) == width:
                yield line, [field.strip() for field in fields] + left_out, None
                continue
            fields += [""] * (width - len(fields))
            yield line, [fields[i].strip() if i is not None else "" for i in positions], None


def _id_digest(external_id: str) -> int:
    # A 64-bit hash keeps duplicate detection small for a million rows. Python's string hash
    # is fast and stable within one process (all this needs): a collision only sends a row to
    # the exact second look in _confirm_duplicates, never to a false report.
    return hash(external_id)


def _repeated(digests: array) -> set[int]:
    """The digests that occur more than once, sorted in 256 small parts (a sort of all of them
    at once would hold a million Python ints)."""
    parts = [array("q") for _ in range(256)]
    for digest in digests:
        parts[digest & 0xFF].append(digest)
    repeated: set[int] = set()
    for part in parts:
        ordered = sorted(part)
        repeated.update(a for a, b in pairwise(ordered) if a == b)
    return repeated


class _Scan:
    """One reading of the file: every row counted and checked, every problem noted in the
    report, and each good row handed on."""

    def __init__(self, path: Path, report: ImportReport):
        self.path = path
        self.report = report
        # Eight bytes a row (a set of them took some 70 MB at a million rows).
        self.digests = array("q")

    def rows(self) -> Iterator[Row]:
        report = self.report
        digests = self.digests
        line = 1
        try:
            for line, record, problem in _records(self.path):
                report.rows += 1
                row, problem = (None, problem) if problem else _check_row(line, record)
                if problem:
                    report.add_problem(line, problem)
                    continue
                digests.append(_id_digest(row.external_id))
                yield row
        except csv.Error as exc:
            report.complete = False
            report.add_problem(
                line + 1, _("the CSV is malformed (%(error)s)", error=str(exc)[:100])
            )
        except ValueError as exc:
            report.complete = False
            report.add_problem(1, str(exc))

    def finish(self) -> None:
        """After the last row: name real duplicates, refuse a file without rows."""
        report = self.report
        suspects = _repeated(self.digests)
        self.digests = array("q")
        if not report.complete:
            return
        if suspects:
            _confirm_duplicates(self.path, suspects, report)
        if report.rows == 0 and report.ok:
            report.add_problem(1, _("the file has no rows"))


def validate(path: Path) -> ImportReport:
    """Read the whole file once and report every problem; write nothing."""
    report = ImportReport()
    scan = _Scan(path, report)
    for _row in scan.rows():
        pass
    scan.finish()
    return report


def _confirm_duplicates(path: Path, suspects: set[int], report: ImportReport) -> None:
    """A second look at rows whose id digest repeated: name real duplicates and their twin."""
    first_line: dict[str, int] = {}
    for line, record, _problem in _records(path):
        if record is None:
            continue
        external_id = record[0]
        if _id_digest(external_id) not in suspects:
            continue
        if external_id in first_line:
            report.add_problem(
                line,
                _("external_id repeats line %(first)d", first=first_line[external_id]),
            )
        else:
            first_line[external_id] = line
    report.problems.sort(key=lambda p: p.line)


class _Refused(Exception):
    """The file has a problem: what the import wrote so far is undone (its savepoint)."""


def import_customers(
    incident: Incident, path: Path | str, *, actor: str, progress=None
) -> ImportReport:
    """Validate then upsert the file; raise ImportRejected (writing nothing) on any problem.

    Another import into the same incident under way: raise runs.Busy before anything is read
    (a command says so; a worker's job goes back to the queue).
    """
    path = Path(path)
    # Held to the end of this transaction (the import is one), so a second import starts only
    # once every row of the first is committed and visible: it then updates them instead of
    # inserting them again (a unique violation half-way, as it was).
    runs.hold_for_transaction(runs.IMPORT, incident.id)
    report = ImportReport()
    try:
        # The file is read once: each batch of good rows is written as soon as it is checked,
        # inside a savepoint, and the first problem anywhere in the file undoes them all. So a
        # bad file changes nothing (as when it was read twice, checked and then written), and
        # a good one is not read, parsed and checked a second time.
        _write_checked(incident, path, report, progress)
    except _Refused:
        audit.record(
            "customers.import_rejected",
            actor=actor,
            subject_type="incident",
            subject_id=incident.slug,
            outcome="failure",
            details={"rows": report.rows, "problems": report.problem_count},
        )
        db.session.flush()  # the command reports the rejection, and its edge keeps this record
        raise ImportRejected(report) from None
    audit.record(
        "customers.imported",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "exposures_added": report.exposures_added,
            "exposures_updated": report.exposures_updated,
        },
    )
    # One transaction for the whole file, committed by the caller's edge: a crash half-way
    # leaves the database as it was.
    db.session.flush()
    return report


def _write_checked(incident: Incident, path: Path, report: ImportReport, progress) -> None:
    """Check the file and write its rows in batches as they pass; raise _Refused on a problem."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if not raw.in_transaction:
            # Begun here, not by the savepoint: pysqlite would let SAVEPOINT open the
            # transaction, and its RELEASE would then commit the rows at once, before the
            # audit record and the command's end. And the one write lock is taken now: the ids
            # handed out below stay free, and a second import waits for this one (busy_timeout).
            raw.execute("BEGIN IMMEDIATE")
    with db.session.begin_nested():
        writer = _writer(incident.id, report)
        try:
            _scan_into(writer, path, report, progress)
        finally:
            writer.close()
    if progress is not None:
        progress(report.rows)


def _scan_into(writer: _Writer, path: Path, report: ImportReport, progress) -> None:
    scan = _Scan(path, report)
    batch: list[Row] = []
    in_batch: set[str] = set()
    before: set[str] = set()  # the ids of the batch before, not yet stored when this is looked up
    writing = True
    for row in scan.rows():
        # The first problem stops the writing: the rest of the file is only checked. An id
        # that repeats one of this batch or the one before stops it too (both would be written
        # as new); one that repeats an earlier batch is found there by the lookup, written as
        # an update, and refused with the file at the end.
        if not writing:
            continue
        external_id = row.external_id
        if not report.ok or external_id in in_batch or external_id in before:
            writing, batch = False, []
            continue
        batch.append(row)
        in_batch.add(external_id)
        if len(batch) == BATCH_SIZE:
            writer.write(batch)
            batch, in_batch, before = [], set(), in_batch
            if progress is not None:
                progress(report.rows)
    scan.finish()
    if not report.ok:
        raise _Refused  # leaving the savepoint undoes every row written
    if batch:
        writer.write(batch)
    writer.finish()


@job("validate_import")
def _validate_job(payload: dict, progress: Progress) -> dict:
    """Job: check an uploaded file; a rejected file is deleted at once."""
    progress(0, 1)
    with force_locale(language_for(payload.get("locale", "en"))):  # the admin's language
        result = validate(Path(payload["path"]))
    if result.problem_count:
        Path(payload["path"]).unlink(missing_ok=True)  # rejected: nothing keeps its data
    return {
        "rows": result.rows,
        "complete": result.complete,
        "problem_count": result.problem_count,
        "problems": [[p.line, p.reason] for p in result.problems],
    }


@job("import_customers")
def _import_job(payload: dict, progress: Progress) -> dict:
    """Job: import a checked upload, then delete it."""
    incident = db.session.get(Incident, payload["incident_id"])
    path = Path(payload["path"])
    try:
        result = import_customers(
            incident,
            path,
            actor=payload["actor"],
            progress=lambda rows: progress(rows, payload.get("rows", 0)),
        )
    except runs.Busy:
        # Another import into this incident: this one goes after it, its upload kept until then
        # (the worker is not parked in a wait meanwhile).
        raise Later() from None
    except BaseException as exc:
        path.unlink(missing_ok=True)  # the upload held personal data: gone once used
        if isinstance(exc, ImportRejected):
            return {"rejected": True, "problem_count": exc.report.problem_count}
        raise
    path.unlink(missing_ok=True)
    return {
        "rows": result.rows,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "exposures_added": result.exposures_added,
    }


# A customer's columns as the import writes them (new rows and changed ones alike).
CUSTOMER_COLUMNS = (
    "id",
    "external_id",
    "public_id",
    "name_sealed",
    "email_sealed",
    "email_index",
    "phone_sealed",
    "locale",
    "region",
    "name_index",
    "phone_index",
    "email_consent",
    "address_line1_sealed",
    "address_line2_sealed",
    "city_sealed",
    "postal_code_sealed",
)
ADDRESS_SEALED = (
    "address_line1_sealed",
    "address_line2_sealed",
    "city_sealed",
    "postal_code_sealed",
)
_KNOWN_COLUMNS = (
    "id, external_id, public_id, name_sealed, email_sealed, phone_sealed, locale, "
    "locale_chosen_at, region, name_index, email_consent, "
    "address_line1_sealed, address_line2_sealed, city_sealed, postal_code_sealed, email_index"
)
# Where the known row's sealed address starts (its four columns in ADDRESS_SEALED order).
_KNOWN_ADDRESS = 11
_KNOWN_EMAIL_INDEX = 15
_EXPOSURE_COLUMNS = "id, customer_id, data_class, fragment_sealed"


def _writer(incident_id: int, report: ImportReport) -> _Writer:
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        return _PostgresWriter(connection, incident_id, report)
    return _SQLiteWriter(connection, incident_id, report)


def _index_of(column_attr) -> tuple[Callable[[str], str], bytes]:
    """(normalise, encoded purpose and NUL) of a blind-index column, as its type declares."""
    kind = column_attr.property.columns[0].type
    return kind.normalise, kind.purpose_for().encode() + b"\x00"


class _Writer:
    """Writes checked rows in batches: who is new, who changed, sealed values, then the rows.

    The SQL text is built from this module's constant column names; every value travels as a
    bound parameter or in COPY's data, never formatted into the SQL.
    """

    # Whether a batch is stored in a thread beside the reading of the next one.
    BESIDE = True

    def __init__(self, connection, incident_id: int, report: ImportReport):
        self.raw = connection.connection.dbapi_connection
        self.incident_id = incident_id
        self.report = report
        # One batch is stored (the database's part of the work, which lets go of the GIL) while
        # the next is read and checked; the connection is used by one thread at a time.
        self.storing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-store")
        self.pending: Future | None = None
        # A sealed batch waiting for the next one's lookup before it is stored (see write).
        self.ready: tuple | None = None
        self.vault = vault.bulk()
        # Each sealed value's associated data: the model's own context with the row's binding.
        self.name_context = context(Customer, "name_sealed", "").encode()
        self.email_context = context(Customer, "email_sealed", "").encode()
        self.phone_context = context(Customer, "phone_sealed", "").encode()
        self.address_contexts = [context(Customer, c, "").encode() for c in ADDRESS_SEALED]
        self.fragment_context = context(Exposure, "fragment_sealed", "").encode()
        self.email_index = _index_of(Customer.email_index)
        self.name_index = _index_of(Customer.name_index)
        self.phone_index = _index_of(Customer.phone_index)

    # --- what the dialects do ---

    def known(self, external_ids: list[str]) -> list[tuple]:
        raise NotImplementedError

    def known_exposures(self, customer_ids: list[int]) -> list[tuple]:
        raise NotImplementedError

    def new_ids(self, count: int) -> list[int]:
        raise NotImplementedError

    def store(
        self, customers: list[tuple], updates: int, exposures: list[tuple], fresh: list[tuple]
    ) -> None:
        """Write a sealed batch: `customers` (its first `updates` known, the rest new), the
        exposures of known customers (id None for a new one), those of the new customers."""
        raise NotImplementedError

    def finish(self) -> None:
        """After the last batch."""
        self.wait()
        if self.ready is not None:
            ready, self.ready = self.ready, None
            self.store(*ready)

    # --- the same on both ---

    def wait(self) -> None:
        """Until the batch being stored is stored (its error, if any, raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        """No store runs after this: the savepoint's release or rollback needs the connection."""
        try:
            self.wait()
        finally:
            self.storing.shutdown()

    def write(self, batch: list[Row]) -> None:
        """Find who is known, hand the batch before this one to the store, and seal this one
        meanwhile: the database writes one batch while Python seals the next and reads the one
        after it (where the store runs BESIDE; else the batch is stored here, once sealed).

        This batch is looked up before the one before it is stored: the caller stops writing
        at an id that repeats the batch before (it would be taken for a new customer here),
        and the file is then refused.
        """
        self.wait()
        report = self.report
        known = {r[1]: r for r in self.known([row.external_id for row in batch])}
        existing: dict[tuple[int, str], tuple] = {}
        if known:  # only customers who were there before can have exposures already
            found = self.known_exposures([current[0] for current in known.values()])
            existing = {(r[1], r[2]): r for r in found}
        fresh: list[Row] = [row for row in batch if row.external_id not in known]
        new_ids = self.new_ids(len(fresh)) if fresh else []
        if self.ready is not None:
            ready, self.ready = self.ready, None
            self.pending = self.storing.submit(self.store, *ready)
        customers: list[tuple] = []  # CUSTOMER_COLUMNS, the changed ones first
        ids: dict[str, tuple[int, str]] = {}  # external_id: (id, public_id)
        for row in batch:
            current = known.get(row.external_id)
            if current is None:
                continue
            customer_id, public_id = current[0], current[2]
            ids[row.external_id] = (customer_id, public_id)
            if self._unchanged(current, row):
                report.unchanged += 1
            else:
                customers.append(self._customer(customer_id, public_id, row, current))
        updates = len(customers)
        report.updated += updates
        fresh_exposures: list[tuple] = []
        if fresh:
            customer = self._customer
            for row, customer_id, public_id in zip(
                fresh, new_ids, new_public_ids(len(fresh)), strict=True
            ):
                customers.append(customer(customer_id, public_id, row))
                self._fresh_exposures(customer_id, public_id, row, fresh_exposures)
            report.created += len(fresh)
            report.exposures_added += len(fresh_exposures)
        exposures = self._exposures(batch, ids, existing) if known else []
        if self.BESIDE:
            # Stored once the next batch has been looked up (or at the end): see above.
            self.ready = (customers, updates, exposures, fresh_exposures)
        else:
            self.store(customers, updates, exposures, fresh_exposures)

    def _customer(
        self, customer_id: int, public_id: str, row: Row, current: tuple | None = None
    ) -> tuple:
        """A customer's row in CUSTOMER_COLUMNS order, its values sealed for this customer
        (`current`: the known row, whose address is kept when the file gives none)."""
        seal, index = self.vault.seal, self.vault.index
        binding = public_id.encode()
        phone = row.phone
        if row.email is not None:
            normal, purpose = self.email_index
            email_sealed = seal(row.email.encode(), self.email_context + binding)
            email_index = index(normal(row.email), purpose)
        elif current is not None:  # the file does not say: the email stored stays
            email_sealed, email_index = current[4], current[_KNOWN_EMAIL_INDEX]
        else:
            email_sealed = email_index = None
        normal, purpose = self.name_index
        name_index = index(normal(row.full_name), purpose)  # for the support desk's lookup
        if phone:
            normal, purpose = self.phone_index
            phone_sealed = seal(phone.encode(), self.phone_context + binding)
            phone_index = index(normal(phone), purpose)
        else:
            phone_sealed = phone_index = None
        return (
            customer_id,
            row.external_id,
            public_id,
            seal(row.full_name.encode(), self.name_context + binding),
            email_sealed,
            email_index,
            phone_sealed,
            row.locale,
            row.region,
            name_index,
            phone_index,
            row.email_consent,
            *self._address(row, binding, current),
        )

    def _address(self, row: Row, binding: bytes, current: tuple | None) -> tuple:
        """The four sealed address columns: the file's, else the ones already stored."""
        if row.address is None:
            if current is None:
                return (None, None, None, None)
            return tuple(current[_KNOWN_ADDRESS : _KNOWN_ADDRESS + 4])
        seal = self.vault.seal
        return tuple(
            None if value is None else seal(value.encode(), place + binding)
            for value, place in zip(row.address, self.address_contexts, strict=True)
        )

    def _same_address(self, current: tuple, row: Row, binding: bytes) -> bool:
        if row.address is None:  # the file does not say: what is stored stays
            return True
        opened = self.vault.open
        stored = current[_KNOWN_ADDRESS : _KNOWN_ADDRESS + 4]
        for value, blob, place in zip(row.address, stored, self.address_contexts, strict=True):
            if (blob is None) != (value is None):
                return False
            if blob is not None and opened(blob, place + binding).decode() != value:
                return False
        return True

    def _unchanged(self, current: tuple, row: Row) -> bool:
        """Whether the customer's row already says what the file says (opened to compare:
        sealed values differ every time they are sealed)."""
        (_id, _e, public_id, name, email, phone, locale, locale_chosen_at, region, name_index) = (
            current[:10]
        )
        consent = current[10]
        if (
            name_index is None  # an older row gets its lookup indexes on re-import
            or (row.email_consent is not None and row.email_consent != consent)
            or region != row.region
            or (locale != row.locale and locale_chosen_at is None)
            or (phone is None) != (row.phone is None)
        ):
            return False
        binding = public_id.encode()
        opened = self.vault.open
        return (
            (phone is None or opened(phone, self.phone_context + binding).decode() == row.phone)
            and (
                row.email is None
                or (
                    email is not None
                    and opened(email, self.email_context + binding).decode() == row.email
                )
            )
            and opened(name, self.name_context + binding).decode() == row.full_name
            and self._same_address(current, row, binding)
        )

    def _fresh_exposures(
        self, customer_id: int, public_id: str, row: Row, into: list[tuple]
    ) -> None:
        """Add (customer_id, incident_id, data_class, fragment_sealed) of a new customer's
        exposures."""
        seal, place, incident = self.vault.seal, self.fragment_context, self.incident_id
        for data_class, fragment in row.exposures.items():
            if fragment:
                binding = Exposure.binding(public_id, incident, data_class).encode()
                sealed = seal(fragment.encode(), place + binding)
                into.append((customer_id, incident, data_class, sealed))
            else:
                into.append((customer_id, incident, data_class, None))

    def _exposures(
        self,
        batch: list[Row],
        ids: dict[str, tuple[int, str]],
        existing: dict[tuple[int, str], tuple],
    ) -> list[tuple]:
        """(customer_id, data_class, fragment_sealed, id or None) of each exposure to write for
        the customers who were known (those in ids)."""
        incident = self.incident_id
        seal, opened = self.vault.seal, self.vault.open
        place = self.fragment_context
        written: list[tuple] = []
        added = 0
        for row in batch:
            known = ids.get(row.external_id)
            if known is None:  # a new customer: _fresh_exposures
                continue
            customer_id, public_id = known
            for data_class, fragment in row.exposures.items():
                binding = Exposure.binding(public_id, incident, data_class).encode()
                current = existing.get((customer_id, data_class)) if existing else None
                if current is not None:
                    old = current[3]
                    if (opened(old, place + binding).decode() if old else None) == fragment:
                        continue
                sealed = seal(fragment.encode(), place + binding) if fragment else None
                if current is None:
                    added += 1
                    written.append((customer_id, data_class, sealed, None))
                else:
                    written.append((customer_id, data_class, sealed, current[0]))
        self.report.exposures_added += added
        self.report.exposures_updated += len(written) - added
        return written


class _SQLiteWriter(_Writer):
    """SQLite: executemany of the driver, in the import's one large transaction."""

    # Not beside: sqlite3 lets go of the GIL for each row's step and must win it back from the
    # reading thread each time (a convoy that made the import three times slower).
    BESIDE = False

    _INSERT = (
        f"INSERT INTO customer ({', '.join(CUSTOMER_COLUMNS)}) "  # noqa: S608  # nosec B608: constant column names
        f"VALUES ({', '.join('?' * len(CUSTOMER_COLUMNS))})"
    )
    # A language the customer picked on the portal outlives the organisation's file.
    _UPDATE = (
        "UPDATE customer SET "  # noqa: S608  # nosec B608: constant column names, values bound
        + ", ".join(
            "locale = CASE WHEN locale_chosen_at IS NULL THEN ? ELSE locale END"
            if c == "locale"
            # A file that does not say keeps what an earlier file said.
            else "email_consent = coalesce(?, email_consent)"
            if c == "email_consent"
            else f"{c} = ?"
            for c in CUSTOMER_COLUMNS[3:]
        )
        + ", updated_at = CURRENT_TIMESTAMP WHERE id = ?"
    )
    _INSERT_EXPOSURE = (
        "INSERT INTO exposure (customer_id, incident_id, data_class, fragment_sealed) "
        "VALUES (?, ?, ?, ?)"
    )
    _UPDATE_EXPOSURE = "UPDATE exposure SET fragment_sealed = ? WHERE id = ?"

    # The page cache of the import's connection, in KiB (the app's connections keep 64 MiB).
    # A million-row import filled all 64 MiB of it and peaked at 202-205 MB of RSS (target:
    # under 200); with 40 MiB, 175-178 MB at the same speed within the noise (measured at 1 M
    # rows: 20.3k rows/s with 64 MiB, 19.5k with 40, 18.4k with 32). The b-trees of the four
    # random keys (public_id and the three blind indexes) outgrow either size well before the
    # end, and a page that is not cached is read from the OS's cache of the file.
    CACHE_KIB = 40 * 1024

    def __init__(self, connection, incident_id: int, report: ImportReport):
        super().__init__(connection, incident_id, report)
        self.cursor = self.raw.cursor()
        self.next_id = self.cursor.execute("SELECT coalesce(max(id), 0) FROM customer").fetchone()[
            0
        ]
        self.cache_size = self.cursor.execute("PRAGMA cache_size").fetchone()[0]
        self.cursor.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")

    def close(self) -> None:
        try:
            super().close()
        finally:  # the connection goes back to the pool as the app configured it
            self.cursor.execute(f"PRAGMA cache_size = {int(self.cache_size)}")

    def known(self, external_ids):
        marks = ", ".join("?" * len(external_ids))
        statement = f"SELECT {_KNOWN_COLUMNS} FROM customer WHERE external_id IN ({marks})"  # noqa: S608  # nosec B608: constant columns and placeholders
        return self.cursor.execute(statement, external_ids).fetchall()

    def known_exposures(self, customer_ids):
        marks = ", ".join("?" * len(customer_ids))
        statement = (
            f"SELECT {_EXPOSURE_COLUMNS} FROM exposure "  # noqa: S608  # nosec B608: constant columns and placeholders
            f"WHERE incident_id = ? AND customer_id IN ({marks})"
        )
        return self.cursor.execute(statement, [self.incident_id, *customer_ids]).fetchall()

    def new_ids(self, count):
        first = self.next_id + 1
        self.next_id += count
        return range(first, first + count)

    def store(self, customers, updates, exposures, fresh):
        cursor = self.cursor
        if updates:
            cursor.executemany(self._UPDATE, [(*c[3:], c[0]) for c in customers[:updates]])
        if len(customers) > updates:
            cursor.executemany(self._INSERT, customers[updates:])
        incident = self.incident_id
        added = fresh + [(c, incident, d, f) for c, d, f, i in exposures if i is None]
        changed = [(f, i) for _c, _d, f, i in exposures if i is not None]
        if added:
            cursor.executemany(self._INSERT_EXPOSURE, added)
        if changed:
            cursor.executemany(self._UPDATE_EXPOSURE, changed)


class _PostgresWriter(_Writer):
    """PostgreSQL: each batch goes by COPY into staging tables, then one set-based upsert for
    the customers and one for their exposures."""

    _STAGE = (
        "CREATE TEMPORARY TABLE import_customer (id bigint, external_id text, public_id text, "
        "name_sealed bytea, email_sealed bytea, email_index bytea, phone_sealed bytea, "
        "locale text, region text, name_index bytea, phone_index bytea, email_consent boolean, "
        "address_line1_sealed bytea, address_line2_sealed bytea, city_sealed bytea, "
        "postal_code_sealed bytea) "
        "ON COMMIT DROP; "
        "CREATE TEMPORARY TABLE import_exposure (customer_id bigint, data_class text, "
        "fragment_sealed bytea) ON COMMIT DROP"
    )
    _CUSTOMER_TYPES = ("int8", "text", "text", "bytea", "bytea", "bytea", "bytea", "text")
    _STAGE_TYPES = (
        [*_CUSTOMER_TYPES, "text", "bytea", "bytea", "bool", "bytea", "bytea", "bytea", "bytea"],
        ["int8", "text", "bytea"],
    )
    _STAGE_CUSTOMERS = "COPY import_customer FROM STDIN (FORMAT BINARY)"
    # Upsert by external_id of the customers already there, their id read by the lookup: a row
    # that another run made anew in between has an id of its own, is left alone here, and the
    # count below says so.
    UPSERT_CUSTOMERS = (
        f"INSERT INTO customer AS c ({', '.join(CUSTOMER_COLUMNS)}) "  # noqa: S608  # nosec B608: constant column names
        f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM import_customer "
        "ON CONFLICT (external_id) DO UPDATE SET "
        + ", ".join(
            # A language the customer picked on the portal outlives the organisation's file.
            "locale = CASE WHEN c.locale_chosen_at IS NULL THEN EXCLUDED.locale ELSE c.locale END"
            if column == "locale"
            # A file that does not say keeps what an earlier file said.
            else "email_consent = coalesce(EXCLUDED.email_consent, c.email_consent)"
            if column == "email_consent"
            else f"{column} = EXCLUDED.{column}"
            for column in CUSTOMER_COLUMNS[3:]
        )
        + ", updated_at = CURRENT_TIMESTAMP WHERE c.id = EXCLUDED.id"
    )
    # New customers (ids just taken from the sequence) go by COPY straight into the table: no
    # staging, and none of the speculative insertion of ON CONFLICT (together some 15% of the
    # server's work a new row). One that another run made in between fails its external_id's
    # unique index, and the import with it. The types are the columns' own (binary COPY).
    COPY_CUSTOMERS = f"COPY customer ({', '.join(CUSTOMER_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    _CUSTOMER_COLUMN_TYPES = ["int4", "text", "text", "bytea", "bytea", "bytea", "bytea", "text"]
    _CUSTOMER_COLUMN_TYPES += ["text", "bytea", "bytea", "bool", "bytea", "bytea", "bytea", "bytea"]
    # Their exposures cannot be there already: nothing else knows their ids yet.
    COPY_EXPOSURES = (
        "COPY exposure (customer_id, incident_id, data_class, fragment_sealed) "
        "FROM STDIN (FORMAT BINARY)"
    )
    _EXPOSURE_COLUMN_TYPES = ["int4", "int4", "text", "bytea"]
    UPSERT_EXPOSURES = (
        "INSERT INTO exposure AS e (customer_id, incident_id, data_class, fragment_sealed) "
        "SELECT customer_id, %s, data_class, fragment_sealed FROM import_exposure "
        "ON CONFLICT ON CONSTRAINT uq_exposure_once DO UPDATE "
        "SET fragment_sealed = EXCLUDED.fragment_sealed"
    )

    def __init__(self, connection, incident_id: int, report: ImportReport):
        super().__init__(connection, incident_id, report)
        self.cursor = self.raw.cursor()
        self.cursor.execute(self._STAGE)
        self.staged = False
        self.cursor.execute("SELECT pg_get_serial_sequence('customer', 'id')")
        self.sequence = self.cursor.fetchone()[0]

    # One index probe per id of the batch, whatever the planner's statistics say: a lookup by
    # `= ANY(array)` of a few thousand ids, or a join with them, was planned as a scan of the
    # whole table once it held a few hundred thousand rows (and the statistics of a table that
    # grows during the import are those from before it). OFFSET 0 keeps the planner from
    # turning the LATERAL subquery back into such a join.
    KNOWN = (
        f"SELECT {_KNOWN_COLUMNS} FROM unnest(%s::text[]) AS batch(key), LATERAL ("  # noqa: S608  # nosec B608: constant column names
        f"SELECT {_KNOWN_COLUMNS} FROM customer WHERE external_id = batch.key OFFSET 0) AS known"
    )
    KNOWN_EXPOSURES = (
        f"SELECT {_EXPOSURE_COLUMNS} FROM unnest(%s::integer[]) AS batch(key), LATERAL ("  # noqa: S608  # nosec B608: constant column names
        f"SELECT {_EXPOSURE_COLUMNS} FROM exposure "
        "WHERE incident_id = %s AND customer_id = batch.key OFFSET 0) AS known"
    )

    def known(self, external_ids):
        return self.cursor.execute(self.KNOWN, [external_ids]).fetchall()

    def known_exposures(self, customer_ids):
        parameters = [customer_ids, self.incident_id]
        return self.cursor.execute(self.KNOWN_EXPOSURES, parameters).fetchall()

    def new_ids(self, count):
        self.cursor.execute(
            "SELECT nextval(%s) FROM generate_series(1, %s)", [self.sequence, count]
        )
        return [r[0] for r in self.cursor.fetchall()]

    def _copy(self, statement: str, types: list[str], rows) -> None:
        with self.cursor.copy(statement) as copy:
            copy.set_types(types)
            write_row = copy.write_row
            for values in rows:
                write_row(values)

    def store(self, customers, updates, exposures, fresh):
        # Here, not at the top: an import into SQLite does not load psycopg (some MB of memory).
        from psycopg.errors import UniqueViolation

        cursor = self.cursor
        if self.staged:  # emptied only when used: a re-import that changes nothing stages nothing
            cursor.execute("TRUNCATE import_customer, import_exposure")
        self.staged = bool(updates or exposures)
        customer_types, exposure_types = self._STAGE_TYPES
        if updates:
            self._copy(self._STAGE_CUSTOMERS, customer_types, customers[:updates])
            cursor.execute(self.UPSERT_CUSTOMERS)
            if cursor.rowcount != updates:
                raise _another_run()
        if len(customers) > updates:
            try:
                self._copy(self.COPY_CUSTOMERS, self._CUSTOMER_COLUMN_TYPES, customers[updates:])
            except UniqueViolation as exc:
                if exc.diag.constraint_name != "uq_customer_external_id":
                    raise
                raise _another_run() from None
        if fresh:
            self._copy(self.COPY_EXPOSURES, self._EXPOSURE_COLUMN_TYPES, fresh)
        if exposures:
            with cursor.copy("COPY import_exposure FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(exposure_types)
                for customer_id, data_class, sealed, _id in exposures:
                    copy.write_row((customer_id, data_class, sealed))
            cursor.execute(self.UPSERT_EXPOSURES, [self.incident_id])

    def finish(self):
        super().finish()
        self.cursor.execute("DROP TABLE import_customer, import_exposure")


def _another_run() -> RuntimeError:
    return RuntimeError(
        "customers of this file were added by another run while it was written; "
        "nothing was imported: run it again"
    )
