"""Import who was affected: validate the whole file first, then upsert it in streamed batches."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy import bindparam, insert, select, update

from portal.extensions import db, vault
from portal.models import DATA_CLASSES, Customer, Exposure, Incident
from portal.models.base import utcnow
from portal.models.customer import new_public_id
from portal.services import audit

COLUMNS = ("external_id", "full_name", "email", "phone", "locale", "region", "data_classes")
REQUIRED = ("external_id", "full_name", "email", "data_classes")
MAX_REPORTED = 50
BATCH_SIZE = 1000

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2})?$")
_REGION = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$")
_FRAGMENT = re.compile(r"^[A-Za-z0-9]{1,4}$")
# Control characters (CR/LF above all) never belong in a name or id: they end up in headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_email(address: str) -> str:
    """The form used for the blind index: trimmed and case-folded."""
    return address.strip().casefold()


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


def _check_row(line: int, record: dict) -> tuple[Row | None, str | None]:
    """Validate one CSV record; return the clean Row or the reason it is refused."""
    if None in record:
        return None, _("the row has more fields than the header")
    values = {name: (record.get(name) or "").strip() for name in COLUMNS}
    for name in REQUIRED:
        if not values[name]:
            return None, _("%(column)s is required", column=name)
    external_id, full_name, email = values["external_id"], values["full_name"], values["email"]
    if len(external_id) > 128 or _CONTROL.search(external_id):
        return None, _("external_id must be at most 128 printable characters")
    if len(full_name) > 200 or _CONTROL.search(full_name):
        return None, _("full_name must be at most 200 printable characters")
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        return None, _("email is not a valid address")
    phone = values["phone"] or None
    if phone is not None and not _E164.match(phone):
        return None, _("phone must be in E.164 form, like +14155550123")
    locale = values["locale"] or "en"
    if not _LOCALE.match(locale):
        return None, _("locale must be a language code like en or es")
    region = values["region"]
    if region and not _REGION.match(region):
        return None, _("region must be an ISO 3166 code like US-CA or DE")
    exposures, problem = _parse_data_classes(values["data_classes"])
    if problem:
        return None, problem
    row = Row(
        line, external_id, full_name, email, phone, locale.replace("_", "-"), region, exposures
    )
    return row, None


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """Stream (line number, record) from the CSV; raise ValueError for an unusable header."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        if not header:
            raise ValueError(_("the file is empty"))
        header = [name.strip() for name in header]
        reader.fieldnames = header
        unknown = [name for name in header if name not in COLUMNS]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ValueError(_("missing required column(s): %(names)s", names=", ".join(missing)))
        if unknown:
            raise ValueError(_("unknown column(s): %(names)s", names=", ".join(unknown)[:200]))
        if len(set(header)) != len(header):
            raise ValueError(_("a column is named twice in the header"))
        ended = reader.line_num
        for record in reader:
            # The line a record starts on: a quoted field may span several lines.
            yield ended + 1, record
            ended = reader.line_num


def _id_digest(external_id: str) -> int:
    # 8 bytes per id keeps duplicate detection small for a million rows.
    return int.from_bytes(hashlib.blake2b(external_id.encode(), digest_size=8).digest(), "big")


def validate(path: Path) -> ImportReport:
    """Read the whole file once and report every problem; write nothing."""
    report = ImportReport()
    seen: set[int] = set()
    suspects: dict[int, list[int]] = {}
    line = 1
    try:
        for line, record in _records(path):
            report.rows += 1
            row, problem = _check_row(line, record)
            if problem:
                report.add_problem(line, problem)
                continue
            digest = _id_digest(row.external_id)
            if digest in seen:
                suspects.setdefault(digest, []).append(line)
            seen.add(digest)
    except UnicodeDecodeError:
        report.add_problem(line + 1, _("the file is not UTF-8 text; save it as CSV UTF-8"))
        return report
    except csv.Error as exc:
        report.add_problem(line + 1, _("the CSV is malformed (%(error)s)", error=str(exc)[:100]))
        return report
    except ValueError as exc:
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
    for line, record in _records(path):
        external_id = (record.get("external_id") or "").strip()
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
    for line, record in _records(path):
        row, problem = _check_row(line, record)
        assert problem is None, "validated rows changed under us"
        yield row


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_customers(incident: Incident, path: Path | str, *, actor: str) -> ImportReport:
    """Validate then upsert the file; raise ImportRejected (writing nothing) on any problem."""
    path = Path(path)
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
        db.session.commit()
        raise ImportRejected(report)

    report.rows = 0
    for batch in _batches(_rows(path), BATCH_SIZE):
        report.rows += len(batch)
        _upsert_batch(incident.id, batch, report)
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
    # One transaction for the whole file: a crash half-way leaves the database as it was.
    db.session.commit()
    return report


def _seal_contact(public_id: str, row: Row) -> dict:
    return {
        "name_sealed": vault.seal(row.full_name, f"customer.name.{public_id}"),
        "email_sealed": vault.seal(row.email, f"customer.email.{public_id}"),
        "email_index": vault.blind_index(normalise_email(row.email), "email"),
        "phone_sealed": vault.seal(row.phone, f"customer.phone.{public_id}") if row.phone else None,
        "phone_index": vault.blind_index(row.phone, "phone") if row.phone else None,
        "locale": row.locale,
        "region": row.region,
    }


def _contact_unchanged(existing, row: Row) -> bool:
    public_id = existing.public_id
    phone = (
        vault.open(existing.phone_sealed, f"customer.phone.{public_id}")
        if existing.phone_sealed is not None
        else None
    )
    return (
        existing.locale == row.locale
        and existing.region == row.region
        and phone == row.phone
        and vault.open(existing.email_sealed, f"customer.email.{public_id}") == row.email
        and vault.open(existing.name_sealed, f"customer.name.{public_id}") == row.full_name
    )


def _upsert_batch(incident_id: int, batch: list[Row], report: ImportReport) -> None:
    session = db.session
    table = Customer.__table__
    existing = {
        r.external_id: r
        for r in session.execute(
            select(
                table.c.id,
                table.c.external_id,
                table.c.public_id,
                table.c.name_sealed,
                table.c.email_sealed,
                table.c.phone_sealed,
                table.c.locale,
                table.c.region,
            ).where(table.c.external_id.in_([row.external_id for row in batch]))
        )
    }
    now = utcnow()
    new_rows, changed = [], []
    customer_ids: dict[str, tuple[int, str]] = {}
    for row in batch:
        current = existing.get(row.external_id)
        if current is None:
            public_id = new_public_id()
            new_rows.append(
                {
                    "external_id": row.external_id,
                    "public_id": public_id,
                    "created_at": now,
                    "updated_at": now,
                    **_seal_contact(public_id, row),
                }
            )
        else:
            customer_ids[row.external_id] = (current.id, current.public_id)
            if _contact_unchanged(current, row):
                report.unchanged += 1
            else:
                sealed = {"updated_at": now, **_seal_contact(current.public_id, row)}
                # Bind names must differ from column names in an UPDATE ... SET.
                changed.append({"b_id": current.id, **{f"b_{k}": v for k, v in sealed.items()}})
    if new_rows:
        inserted = session.execute(
            insert(table).returning(
                table.c.id, table.c.external_id, table.c.public_id, sort_by_parameter_order=True
            ),
            new_rows,
        )
        for customer_id, external_id, public_id in inserted:
            customer_ids[external_id] = (customer_id, public_id)
        report.created += len(new_rows)
    if changed:
        values = {k[2:]: bindparam(k) for k in changed[0] if k != "b_id"}
        session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(values),
            changed,
            execution_options={"synchronize_session": False},
        )
        report.updated += len(changed)
    _upsert_exposures(incident_id, batch, customer_ids, report)


def _upsert_exposures(
    incident_id: int, batch: list[Row], customer_ids: dict[str, tuple[int, str]], report
) -> None:
    session = db.session
    table = Exposure.__table__
    ids = [customer_ids[row.external_id][0] for row in batch]
    existing = {
        (r.customer_id, r.data_class): r
        for r in session.execute(
            select(
                table.c.id, table.c.customer_id, table.c.data_class, table.c.fragment_sealed
            ).where(table.c.incident_id == incident_id, table.c.customer_id.in_(ids))
        )
    }
    now = utcnow()
    new_rows, changed = [], []
    for row in batch:
        customer_id, public_id = customer_ids[row.external_id]
        for data_class, fragment in row.exposures.items():
            context = Exposure.fragment_context(public_id, incident_id, data_class)
            current = existing.get((customer_id, data_class))
            if current is not None:
                sealed_old = current.fragment_sealed
                if (vault.open(sealed_old, context) if sealed_old else None) == fragment:
                    continue
            sealed = vault.seal(fragment, context) if fragment else None
            if current is None:
                new_rows.append(
                    {
                        "customer_id": customer_id,
                        "incident_id": incident_id,
                        "data_class": data_class,
                        "fragment_sealed": sealed,
                        "created_at": now,
                    }
                )
            else:
                changed.append({"b_id": current.id, "b_fragment": sealed})
    if new_rows:
        session.execute(insert(table), new_rows)
        report.exposures_added += len(new_rows)
    if changed:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(fragment_sealed=bindparam("b_fragment")),
            changed,
            execution_options={"synchronize_session": False},
        )
        report.exposures_updated += len(changed)
