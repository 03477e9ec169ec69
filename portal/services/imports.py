"""Import who was affected: validate the whole file first, then upsert it in streamed batches."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from portal.extensions import db
from portal.i18n import language_for
from portal.models import DATA_CLASSES, Customer, Exposure, Incident
from portal.models.customer import new_public_id
from portal.models.sealed import index_of
from portal.models.sealed import open_text as _open
from portal.models.sealed import seal as _seal
from portal.services import audit, runs
from portal.services.background import Later, Progress, job
from portal.validation import (
    Invalid,
    email_address,
    has_invisible,
    is_single_line,
    phone_number,
)

COLUMNS = ("external_id", "full_name", "email", "phone", "locale", "region", "data_classes")
REQUIRED = ("external_id", "full_name", "email", "data_classes")
MAX_REPORTED = 50
BATCH_SIZE = 1000

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
    email: str
    phone: str | None
    locale: str
    region: str
    exposures: dict[str, str | None]


def _parse_data_classes(value: str) -> tuple[dict[str, str | None], str | None]:
    """Parse 'payment_card:4242;ssn' into {key: fragment}; return (result, problem)."""
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
    """Validate one record (values in COLUMNS order); return the clean Row or why it is refused."""
    external_id, full_name, email, phone, locale, region, data_classes = values
    # Invisible and direction-changing characters would make a name look like another one on
    # the staff's pages (or an id read backwards); the C0 and C1 controls end up in headers.
    for name, value in (("external_id", external_id), ("full_name", full_name)):
        if has_invisible(value):
            return None, _(
                "%(column)s contains an invisible or direction-changing character", column=name
            )
    required = (
        ("external_id", external_id),
        ("full_name", full_name),
        ("email", email),
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
        email = email_address(email)
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
    locale = locale.replace("_", "-")
    return Row(line, external_id, full_name, email, phone or None, locale, region, exposures), None


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
            if _BAD_BYTE.search(text):
                self.bad.append(self.number)
            yield text


def _records(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Stream (line number, stripped values in COLUMNS order, problem) from the CSV.

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
        unknown = [name for name in header if name not in COLUMNS]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ValueError(_("missing required column(s): %(names)s", names=", ".join(missing)))
        if unknown:
            raise ValueError(_("unknown column(s): %(names)s", names=", ".join(unknown)[:200]))
        if len(set(header)) != len(header):
            raise ValueError(_("a column is named twice in the header"))
        width = len(header)
        positions = [header.index(name) if name in header else None for name in COLUMNS]
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
            fields += [""] * (width - len(fields))
            yield line, [fields[i].strip() if i is not None else "" for i in positions], None


def _id_digest(external_id: str) -> int:
    # A 64-bit hash keeps duplicate detection small for a million rows. Python's string hash
    # is fast and stable within one process (all this needs): a collision only sends a row to
    # the exact second look in _confirm_duplicates, never to a false report.
    return hash(external_id)


def validate(path: Path) -> ImportReport:
    """Read the whole file once and report every problem; write nothing."""
    report = ImportReport()
    seen: set[int] = set()
    suspects: dict[int, list[int]] = {}
    line = 1
    try:
        for line, record, problem in _records(path):
            report.rows += 1
            row, problem = (None, problem) if problem else _check_row(line, record)
            if problem:
                report.add_problem(line, problem)
                continue
            digest = _id_digest(row.external_id)
            if digest in seen:
                suspects.setdefault(digest, []).append(line)
            seen.add(digest)
    except csv.Error as exc:
        report.complete = False
        report.add_problem(line + 1, _("the CSV is malformed (%(error)s)", error=str(exc)[:100]))
        return report
    except ValueError as exc:
        report.complete = False
        report.add_problem(1, str(exc))
        return report
    if suspects:
        _confirm_duplicates(path, suspects, report)
    if report.rows == 0 and report.ok:
        report.add_problem(1, _("the file has no rows"))
    return report


def _confirm_duplicates(path: Path, suspects: dict[int, list[int]], report: ImportReport) -> None:
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


def _rows(path: Path) -> Iterator[Row]:
    """The second pass over a file that validated: build the rows without checking again."""
    for line, values, _problem in _records(path):
        external_id, full_name, email, phone, locale, region, data_classes = values
        exposures = {}
        for item in data_classes.split(";"):
            key, _sep, fragment = item.strip().partition(":")
            if key:
                exposures[key.strip()] = fragment.strip() or None
        yield Row(
            line,
            external_id,
            full_name,
            email_address(email),  # the kept forms, as the first pass checked them
            phone_number(phone) if phone else None,
            (locale or "en").replace("_", "-"),
            region,
            exposures,
        )


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    report = validate(path)
    if not report.ok:
        audit.record(
            "customers.import_rejected",
            actor=actor,
            subject_type="incident",
            subject_id=incident.slug,
            outcome="failure",
            details={"rows": report.rows, "problems": report.problem_count},
        )
        db.session.flush()  # the command reports the rejection, and its edge keeps this record
        raise ImportRejected(report)

    report.rows = 0
    for batch in _batches(_rows(path), BATCH_SIZE):
        report.rows += len(batch)
        _upsert_batch(incident.id, batch, report)
        if progress is not None:
            progress(report.rows)
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


CONTACT_COLUMNS = (
    "name_sealed",
    "email_sealed",
    "email_index",
    "phone_sealed",
    "locale",
    "region",
    "name_index",
    "phone_index",
)


def _seal_contact(public_id: str, row: Row) -> tuple:
    """The customer's contact columns (CONTACT_COLUMNS order), sealed for this row."""
    phone = row.phone
    return (
        _seal(Customer, "name_sealed", public_id, row.full_name),
        _seal(Customer, "email_sealed", public_id, row.email),
        index_of(Customer.email_index, row.email),
        _seal(Customer, "phone_sealed", public_id, phone) if phone else None,
        row.locale,
        row.region,
        # Digests only, for the support desk's lookup by name or phone.
        index_of(Customer.name_index, row.full_name),
        index_of(Customer.phone_index, phone) if phone else None,
    )


def _contact_unchanged(existing, row: Row) -> bool:
    public_id = existing.public_id
    phone = (
        _open(Customer, "phone_sealed", public_id, existing.phone_sealed)
        if existing.phone_sealed is not None
        else None
    )
    return (
        existing.name_index is not None  # an older row gets its lookup indexes on re-import
        and (existing.locale == row.locale or existing.locale_chosen_at is not None)
        and existing.region == row.region
        and phone == row.phone
        and _open(Customer, "email_sealed", public_id, existing.email_sealed) == row.email
        and _open(Customer, "name_sealed", public_id, existing.name_sealed) == row.full_name
    )


def _executemany(statement: str, rows: list[tuple]) -> None:
    """Run one parametrised statement for many rows straight on the driver.

    Speed: a million rows through the ORM's per-row parameter processing is several times
    slower. Safety is unchanged: the SQL text is a constant of this module and every value
    travels as a bound parameter (never formatted into the SQL).
    """
    connection = db.session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(statement.replace("?", mark), rows)


# The SQL text is built once from this module's constant column names; values are bound.
_INSERT_CUSTOMER = (
    f"INSERT INTO customer (external_id, public_id, {', '.join(CONTACT_COLUMNS)}) "  # noqa: S608  # nosec B608: constant column names
    f"VALUES ({', '.join('?' * (len(CONTACT_COLUMNS) + 2))})"
)
# A language the customer picked on the portal outlives the organisation's file.
_UPDATE_CUSTOMER = (
    "UPDATE customer SET "  # noqa: S608  # nosec B608: constant column names, values bound
    + ", ".join(
        "locale = CASE WHEN locale_chosen_at IS NULL THEN ? ELSE locale END"
        if c == "locale"
        else f"{c} = ?"
        for c in CONTACT_COLUMNS
    )
    + ", updated_at = CURRENT_TIMESTAMP WHERE id = ?"
)
_INSERT_EXPOSURE = (
    "INSERT INTO exposure (customer_id, incident_id, data_class, fragment_sealed) "
    "VALUES (?, ?, ?, ?)"
)
_UPDATE_EXPOSURE = "UPDATE exposure SET fragment_sealed = ? WHERE id = ?"


def _upsert_batch(incident_id: int, batch: list[Row], report: ImportReport) -> None:
    table = Customer.__table__
    external_ids = [row.external_id for row in batch]
    existing = {
        r.external_id: r
        for r in db.session.execute(
            select(
                table.c.id,
                table.c.external_id,
                table.c.public_id,
                table.c.name_sealed,
                table.c.email_sealed,
                table.c.phone_sealed,
                table.c.locale,
                table.c.locale_chosen_at,
                table.c.region,
                table.c.name_index,
            ).where(table.c.external_id.in_(external_ids))
        )
    }
    new_rows, changed = [], []
    customer_ids: dict[str, tuple[int, str]] = {}
    for row in batch:
        current = existing.get(row.external_id)
        if current is None:
            public_id = new_public_id()
            new_rows.append((row.external_id, public_id, *_seal_contact(public_id, row)))
        else:
            customer_ids[row.external_id] = (current.id, current.public_id)
            if _contact_unchanged(current, row):
                report.unchanged += 1
            else:
                changed.append((*_seal_contact(current.public_id, row), current.id))
    if new_rows:
        _executemany(_INSERT_CUSTOMER, new_rows)
        created = db.session.execute(
            select(table.c.id, table.c.external_id, table.c.public_id).where(
                table.c.external_id.in_([r[0] for r in new_rows])
            )
        )
        for customer_id, external_id, public_id in created:
            customer_ids[external_id] = (customer_id, public_id)
        report.created += len(new_rows)
    if changed:
        _executemany(_UPDATE_CUSTOMER, changed)
        report.updated += len(changed)
    _upsert_exposures(incident_id, batch, customer_ids, report)


def _upsert_exposures(
    incident_id: int, batch: list[Row], customer_ids: dict[str, tuple[int, str]], report
) -> None:
    table = Exposure.__table__
    ids = [customer_ids[row.external_id][0] for row in batch]
    existing = {
        (r.customer_id, r.data_class): r
        for r in db.session.execute(
            select(
                table.c.id, table.c.customer_id, table.c.data_class, table.c.fragment_sealed
            ).where(table.c.incident_id == incident_id, table.c.customer_id.in_(ids))
        )
    }
    new_rows, changed = [], []
    for row in batch:
        customer_id, public_id = customer_ids[row.external_id]
        for data_class, fragment in row.exposures.items():
            current = existing.get((customer_id, data_class))
            binding = Exposure.binding(public_id, incident_id, data_class)
            if current is not None:
                old = current.fragment_sealed
                if (_open(Exposure, "fragment_sealed", binding, old) if old else None) == fragment:
                    continue
            sealed = _seal(Exposure, "fragment_sealed", binding, fragment) if fragment else None
            if current is None:
                new_rows.append((customer_id, incident_id, data_class, sealed))
            else:
                changed.append((sealed, current.id))
    if new_rows:
        _executemany(_INSERT_EXPOSURE, new_rows)
        report.exposures_added += len(new_rows)
    if changed:
        _executemany(_UPDATE_EXPOSURE, changed)
        report.exposures_updated += len(changed)
