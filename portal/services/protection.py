"""Identity protection: the offer, the provider's code pool, enrollment and the waiting list."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import clock, regions, spreadsheet
from portal.extensions import db
from portal.i18n import with_translation
from portal.mail.compose import compose_alert, compose_protection_code
from portal.models import (
    DATA_CLASSES,
    ActivationCode,
    Customer,
    Enrollment,
    Exposure,
    Incident,
    OutboxMessage,
    ProtectionOffer,
)
from portal.models.audit import Actor, customer_actor
from portal.services import audit, outbox

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{4,38}[A-Z0-9]$")
MAX_REPORTED = 50


class ProtectionError(Exception):
    """Something to tell the person, in words; nothing was changed."""


class EnrollmentClosed(ProtectionError):
    pass


class NotEligible(ProtectionError):
    pass


@dataclass
class CodeReport:
    lines: int = 0
    added: int = 0
    handed_to_waiting: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    problem_count: int = 0

    def add_problem(self, line: int, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append((line, reason))


class CodesRejected(Exception):
    def __init__(self, report: CodeReport):
        super().__init__(f"{report.problem_count} problem(s)")
        self.report = report


# --- the offer ---


def offer_for(incident_id: int) -> ProtectionOffer | None:
    return db.session.scalar(
        select(ProtectionOffer).where(ProtectionOffer.incident_id == incident_id)
    )


def save_offer(incident: Incident, *, actor: str, **fields) -> ProtectionOffer:
    """Create or update the incident's offer (validated; nothing saved on a bad value)."""
    wanted = {k.strip() for k in (fields.get("eligible_classes") or "").split(",") if k.strip()}
    unknown = sorted(wanted - DATA_CLASSES.keys())
    if unknown:
        raise ProtectionError(_("Unknown data classes: %(keys)s", keys=", ".join(unknown)))
    for name in ("enroll_url", "terms_url"):
        if fields.get(name) and not fields[name].startswith("https://"):
            raise ProtectionError(_("%(name)s must be an https:// address", name=name))
    if int(fields.get("term_months") or 12) < 1:
        raise ProtectionError(_("The term must be at least one month."))
    if fields.get("regions") is not None:
        codes = regions.parse_list(fields["regions"])
        wrong = [c for c in codes if c not in regions.GROUPS and not regions.is_valid(c)]
        if wrong:
            raise ProtectionError(
                _(
                    "Unknown region codes: %(codes)s. Use a country (US, DE), a state or "
                    "province (US-CA) or EU, separated by commas.",
                    codes=", ".join(wrong),
                )
            )
        fields["regions"] = ",".join(codes)
    offer = offer_for(incident.id) or ProtectionOffer(incident_id=incident.id)
    translations = fields.pop("translations", None) or {}
    for name, value in fields.items():
        if value is not None:
            setattr(offer, name, value)
    for language, texts in translations.items():  # {"es": {"includes": "..."}}
        offer.translations = with_translation(offer, language, texts)
    db.session.add(offer)
    db.session.flush()
    audit.record(
        "protection.offer_saved", actor=actor, subject_type="incident", subject_id=incident.slug
    )
    db.session.flush()
    return offer


def is_closed(offer: ProtectionOffer) -> bool:
    return clock.now().date() > offer.enroll_by


def days_left(offer: ProtectionOffer) -> int:
    return (offer.enroll_by - clock.now().date()).days


def is_open_where(offer: ProtectionOffer, customer: Customer) -> bool:
    """Whether the offer is open where the customer lives (an offer without regions: anywhere).

    A customer with no region on file counts as living in the home country (portal/regions.py),
    so an offer open to "US" reaches them, and one open only to "US-CA" does not.
    """
    return regions.within(customer.region, offer.region_list)


def is_eligible(offer: ProtectionOffer, customer: Customer) -> bool:
    """Affected by the offer's incident, (if the offer says so) by one of its data classes, and
    living where the offer is open: a product that only works in one country is not offered to
    someone who cannot use it."""
    if not is_open_where(offer, customer):
        return False
    query = select(Exposure.data_class).where(
        Exposure.customer_id == customer.id, Exposure.incident_id == offer.incident_id
    )
    return covers(offer, set(db.session.scalars(query)))


def covers(offer: ProtectionOffer, keys: set[str]) -> bool:
    """Whether someone with these exposed data classes may take the offer up."""
    return bool(keys) and (not offer.eligible_keys or bool(keys & offer.eligible_keys))


# --- the code pool ---


def code_of(code: ActivationCode) -> str:
    return code.code


def _read_codes(path: Path, report: CodeReport) -> list[tuple[int, str]]:
    """(line, code) for every code in the file: one per line, or a CSV with a `code` column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        report.add_problem(1, _("the file is not UTF-8 text"))
        return []
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a blank line at the very end is only how files end
    if not lines:
        report.add_problem(1, _("the file has no codes"))
        return []
    first = lines[0].strip().lower()
    if "," in first or first == "code":
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        if "code" not in [name.strip().lower() for name in reader.fieldnames or []]:
            report.add_problem(1, _("a CSV file needs a column named code"))
            return []
        column = next(n for n in reader.fieldnames if n.strip().lower() == "code")
        return [(reader.line_num, (row.get(column) or "").strip()) for row in reader]
    return [(number, line.strip()) for number, line in enumerate(lines, start=1)]


def import_codes(incident: Incident, path: Path | str, *, actor: str) -> CodeReport:
    """Validate the provider's file, then load it all (or nothing); then serve the waiting list."""
    offer = offer_for(incident.id)
    if offer is None:
        raise ProtectionError(_("This incident has no protection offer yet."))
    report = CodeReport()
    entries = _read_codes(Path(path), report)
    seen: dict[bytes, int] = {}
    clean: list[ActivationCode] = []
    for line, raw in entries:
        report.lines += 1
        code = raw.upper()
        if not code:
            report.add_problem(line, _("the line is empty"))
            continue
        if not _CODE.match(code):
            report.add_problem(line, _("not an activation code (6 to 40 letters, digits, dashes)"))
            continue
        candidate = ActivationCode(offer_id=offer.id)
        candidate.code = code  # sealed, with its keyed digest for finding duplicates
        index = candidate.code_index
        if index in seen:
            report.add_problem(line, _("the same code as line %(line)d", line=seen[index]))
            continue
        seen[index] = line
        clean.append(candidate)
    if clean:
        loaded = set(
            db.session.scalars(
                select(ActivationCode.code_index).where(
                    ActivationCode.offer_id == offer.id,
                    ActivationCode.code_index.in_([c.code_index for c in clean]),
                )
            )
        )
        for candidate in clean:
            if candidate.code_index in loaded:
                report.add_problem(seen[candidate.code_index], _("this code was loaded before"))
    if report.problem_count:
        audit.record(
            "protection.codes_rejected",
            actor=actor,
            subject_type="incident",
            subject_id=incident.slug,
            outcome="failure",
            details={"problems": report.problem_count},
        )
        db.session.flush()  # the command reports the rejection, and its edge keeps this record
        raise CodesRejected(report)
    db.session.add_all(clean)
    db.session.flush()
    report.added = len(clean)
    audit.record(
        "protection.codes_imported",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"codes": report.added},
    )
    report.handed_to_waiting = _serve_waiting(offer)
    db.session.flush()
    return report


def pool_size(offer: ProtectionOffer) -> tuple[int, int]:
    """(free codes, codes given out)."""
    free, given = db.session.execute(
        select(
            func.count().filter(ActivationCode.customer_id.is_(None)),
            func.count().filter(ActivationCode.customer_id.is_not(None)),
        ).where(ActivationCode.offer_id == offer.id)
    ).one()
    return free, given


@dataclass(frozen=True)
class OfferView:
    offer: ProtectionOffer
    eligible: bool
    closed: bool
    days_left: int
    enrollment: Enrollment | None
    code: str | None
    open_where: bool = True  # False: not offered where the customer lives


def offers_for(customer: Customer) -> list[OfferView]:
    """Every offer of an incident that touched this customer, with where they stand."""
    offers = db.session.scalars(
        select(ProtectionOffer)
        .join(Exposure, Exposure.incident_id == ProtectionOffer.incident_id)
        .where(Exposure.customer_id == customer.id)
        .distinct()
        .order_by(ProtectionOffer.id)
    ).all()
    views = []
    for offer in offers:
        enrollment = enrollment_of(offer, customer)
        views.append(
            OfferView(
                offer,
                is_eligible(offer, customer),
                is_closed(offer),
                days_left(offer),
                enrollment,
                code_for(enrollment) if enrollment else None,
                is_open_where(offer, customer),
            )
        )
    return views


def offer_for_customer(offer_id: int, customer: Customer) -> ProtectionOffer | None:
    """An offer of one of this customer's incidents, or None (another's offer is not found)."""
    for view in offers_for(customer):
        if view.offer.id == offer_id:
            return view.offer
    return None


def shown_status(enrollment_status: str | None) -> str:
    """What the dashboard says of an offer: "offered" until the customer enrolls, then
    "enrolled" or "waiting" (for a code from the pool)."""
    return enrollment_status or "offered"


# --- enrolling ---


def _claim_code(offer: ProtectionOffer, customer_id: int) -> ActivationCode | None:
    """Give one free code to this customer; None when the pool is empty.

    On PostgreSQL, SKIP LOCKED lets concurrent enrollments take different codes without waiting
    on each other. On every database the UPDATE only succeeds on a still-free row, so a code can
    never be given twice even if two transactions picked the same one.
    """
    while True:
        candidate = db.session.scalar(
            select(ActivationCode.id)
            .where(ActivationCode.offer_id == offer.id, ActivationCode.customer_id.is_(None))
            .order_by(ActivationCode.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if candidate is None:
            return None
        taken = db.session.execute(
            update(ActivationCode)
            .where(ActivationCode.id == candidate, ActivationCode.customer_id.is_(None))
            .values(customer_id=customer_id, assigned_at=clock.now()),
            execution_options={"synchronize_session": False},
        )
        if taken.rowcount == 1:
            return db.session.get(ActivationCode, candidate)


def enrollment_of(offer: ProtectionOffer, customer: Customer) -> Enrollment | None:
    return db.session.scalar(
        select(Enrollment).where(
            Enrollment.offer_id == offer.id, Enrollment.customer_id == customer.id
        )
    )


def enroll(offer: ProtectionOffer, customer: Customer) -> Enrollment:
    """Enroll with consent given: a code at once, or a place in line. Idempotent."""
    existing = enrollment_of(offer, customer)
    if existing is not None:
        return existing  # a double-click or a second tab gets the same enrollment
    if is_closed(offer):
        raise EnrollmentClosed(
            _("Enrollment closed on %(date)s.", date=format_date(offer.enroll_by, "long"))
        )
    if not is_open_where(offer, customer):
        raise NotEligible(_("This offer is not available where you live."))
    if not is_eligible(offer, customer):
        raise NotEligible(_("This offer is not available for your account."))
    offer_id, customer_id = offer.id, customer.id
    now = clock.now()
    enrollment = Enrollment(
        offer_id=offer_id,
        customer_id=customer_id,
        status="waiting",
        requested_at=now,
        consented_at=now,
    )
    try:
        # The unique (offer, customer) row: only one request gets past here. A savepoint, so
        # that the loser undoes only this insert, not the rest of its request.
        with db.session.begin_nested():
            db.session.add(enrollment)
    except IntegrityError:
        return db.session.scalar(
            select(Enrollment).where(
                Enrollment.offer_id == offer_id, Enrollment.customer_id == customer_id
            )
        )
    code = _claim_code(offer, customer.id)
    if code is not None:
        _give(enrollment, code, customer, offer)
    else:
        audit.record(
            "protection.waiting",
            actor=customer_actor(customer),
            subject_type="customer",
            subject_id=customer.public_id,
        )
        _alert_pool_empty(offer)
    db.session.flush()
    return enrollment


def _give(
    enrollment: Enrollment,
    code: ActivationCode,
    customer: Customer,
    offer: ProtectionOffer,
    *,
    from_waiting: bool = False,
) -> None:
    enrollment.status = "enrolled"
    enrollment.code_id = code.id
    enrollment.enrolled_at = clock.now()
    audit.record(
        "protection.enrolled",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"from_waiting_list": from_waiting},
    )
    audit.record(
        "protection.code_assigned",
        actor=Actor.PROTECTION,
        subject_type="activation_code",
        subject_id=code.id,
    )
    # The code is the one thing they need, so this message carries it (and nothing else).
    outbox.queue_message(
        compose_protection_code,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"protection-code:{enrollment.id}",
        offer=offer,
        code=code_of(code),
        from_waiting=from_waiting,
    )


def _alert_pool_empty(offer: ProtectionOffer) -> None:
    """Tell the operators, at most once an hour per offer, that customers are waiting."""
    hour = clock.now().strftime("%Y%m%d%H")
    key = f"alert:pool-empty:{offer.id}:{hour}"
    if db.session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.dedupe_key == key)
    ):
        return
    waiting = db.session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(Enrollment.offer_id == offer.id, Enrollment.status == "waiting")
    )
    try:
        # Many enrollments meet the empty pool at once; the first to commit queues the alert and
        # the others' check above does not see it yet. A savepoint, so that a loser undoes only
        # this insert, not the customer's enrollment on the waiting list.
        with db.session.begin_nested():
            outbox.queue_message(
                compose_alert,
                to=current_app.config["ALERT_EMAIL"],
                locale="en",  # the response team reads alerts in English
                dedupe_key=key,
                subject=f"Activation codes have run out: {offer.incident.slug}",
                text=(
                    f"The {offer.provider_name} code pool for incident {offer.incident.slug} is "
                    f"empty. {waiting} customer(s) are on the waiting list. Import more codes "
                    f"with `portal protection import-codes --incident {offer.incident.slug} "
                    f"FILE`; waiting customers then get theirs in order."
                ),
            )
    except IntegrityError:
        return  # another request queued this hour's alert, and recorded it
    audit.record(
        "protection.pool_empty",
        actor=Actor.PROTECTION,
        subject_type="incident",
        subject_id=offer.incident.slug,
        outcome="failure",
        details={"waiting": waiting},
    )


def _serve_waiting(offer: ProtectionOffer) -> int:
    """Hand new codes to the waiting list, first come first served."""
    served = 0
    waiting = db.session.scalars(
        select(Enrollment)
        .where(Enrollment.offer_id == offer.id, Enrollment.status == "waiting")
        .order_by(Enrollment.requested_at, Enrollment.id)
    ).all()
    for enrollment in waiting:
        code = _claim_code(offer, enrollment.customer_id)
        if code is None:
            break
        customer = db.session.get(Customer, enrollment.customer_id)
        _give(enrollment, code, customer, offer, from_waiting=True)
        served += 1
    return served


def code_for(enrollment: Enrollment) -> str | None:
    if enrollment.code_id is None:
        return None
    return code_of(db.session.get(ActivationCode, enrollment.code_id))


# --- the provider's export ---


def export(incident: Incident, path: Path | str, *, actor: str) -> int:
    """Write who enrolled, when, and with which code, for the provider. Returns the count."""
    offer = offer_for(incident.id)
    if offer is None:
        raise ProtectionError(_("This incident has no protection offer yet."))
    rows = db.session.execute(
        select(Enrollment, Customer, ActivationCode)
        .join(Customer, Customer.id == Enrollment.customer_id)
        .join(ActivationCode, ActivationCode.id == Enrollment.code_id)
        .where(Enrollment.offer_id == offer.id, Enrollment.status == "enrolled")
        .order_by(Enrollment.enrolled_at, Enrollment.id)
    )
    count = 0
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "full_name", "email", "enrolled_at", "activation_code"])
        for enrollment, customer, code in rows:
            writer.writerow(
                [
                    spreadsheet.cell(v)
                    for v in (
                        customer.external_id,
                        customer.name,
                        customer.email or "",  # none on file: a person reached by letter
                        enrollment.enrolled_at.isoformat(),
                        code_of(code),
                    )
                ]
            )
            count += 1
    audit.record(
        "protection.exported",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"rows": count},
    )
    db.session.flush()
    return count
