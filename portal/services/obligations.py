"""The legal clock: which notification duties apply to an incident, their deadlines, and done."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Customer, Exposure, Incident, Obligation
from portal.services import audit

CATALOGUE = Path(__file__).resolve().parent.parent / "obligations" / "catalogue.toml"
# EU and EEA countries: GDPR reaches residents of these.
EU_EEA = {
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
    "IS",
    "LI",
    "NO",
}
SOON = timedelta(hours=48)


class ObligationError(Exception):
    """Something to tell the admin; nothing was changed."""


@dataclass(frozen=True)
class Duty:
    id: str
    name: str
    recipient: str
    clock: str
    amount: int
    start: str
    applies: dict
    source: str


@cache
def catalogue() -> tuple[str, tuple[Duty, ...]]:
    """(as-of date, duties), read once from the reviewed data file."""
    raw = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    duties = tuple(
        Duty(
            d["id"],
            d["name"],
            d["recipient"],
            d["clock"],
            int(d["amount"]),
            d["from"],
            dict(d["applies"]),
            d["source"],
        )
        for d in raw["duties"]
    )
    return raw["as_of"], duties


@dataclass(frozen=True)
class Facts:
    """What decides the duties: residents per region and per region for health data."""

    residents: dict[str, int]
    health_residents: dict[str, int]
    classes: set[str]


def facts(incident: Incident) -> Facts:
    """Three aggregate queries, however many customers."""
    per_region = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id)
        .group_by(Customer.region)
    )
    health = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(
            Exposure.incident_id == incident.id,
            Exposure.data_class.in_(("medical_records", "health_insurance")),
        )
        .group_by(Customer.region)
    )
    classes = set(
        db.session.scalars(
            select(Exposure.data_class).where(Exposure.incident_id == incident.id).distinct()
        )
    )
    return Facts(dict(per_region.all()), dict(health.all()), classes)


def _applies(duty: Duty, incident: Incident, f: Facts) -> bool:
    rule = duty.applies
    kind = rule["kind"]
    if kind == "eu_residents":
        return any(region.split("-")[0] in EU_EEA for region in f.residents if region)
    if kind == "state":
        return f.residents.get(rule["region"], 0) >= rule["min_residents"]
    if kind == "data_classes":
        return bool(f.classes & set(rule["classes"]))
    if kind == "data_classes_in_state":
        return any(n >= rule["min_residents"] for n in f.health_residents.values())
    if kind == "materiality":
        return incident.materiality_on is not None
    if kind == "nydfs":
        return current_app.config["NYDFS_COVERED"] and f.residents.get("US-NY", 0) > 0
    raise ValueError(f"unknown rule {kind!r} in the obligations catalogue")


def _add_business_days(start: date, days: int) -> date:
    current = start
    while days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def deadline(duty: Duty, incident: Incident) -> datetime:
    """When the duty falls due (UTC), counted from discovery or the materiality decision."""
    day = incident.materiality_on if duty.start == "materiality" else incident.discovered_on
    start = datetime.combine(day, time.min, tzinfo=UTC)
    if duty.clock == "hours":
        return start + timedelta(hours=duty.amount)
    if duty.clock == "business_days":
        return datetime.combine(_add_business_days(day, duty.amount), time.max, tzinfo=UTC)
    return datetime.combine(day + timedelta(days=duty.amount), time.max, tzinfo=UTC)


@dataclass(frozen=True)
class DutyStatus:
    incident: Incident
    duty: Duty
    due_at: datetime
    done: Obligation | None

    @property
    def overdue(self) -> bool:
        return self.done is None and self.due_at < clock.now()

    @property
    def due_soon(self) -> bool:
        return self.done is None and not self.overdue and self.due_at - clock.now() <= SOON

    @property
    def days_left(self) -> int:
        return (self.due_at.date() - clock.now().date()).days


def for_incident(incident: Incident) -> list[DutyStatus]:
    """Every duty that applies, soonest deadline first, with what was recorded as done."""
    f = facts(incident)
    done = {
        o.duty_id: o
        for o in db.session.scalars(select(Obligation).where(Obligation.incident_id == incident.id))
    }
    statuses = [
        DutyStatus(incident, duty, deadline(duty, incident), done.get(duty.id))
        for duty in catalogue()[1]
        if _applies(duty, incident, f)
    ]
    return sorted(statuses, key=lambda s: (s.done is not None, s.due_at))


def attention(incidents: list[Incident]) -> list[DutyStatus]:
    """Open duties that are overdue or due within 48 hours, across incidents."""
    return [s for incident in incidents for s in for_incident(incident) if s.overdue or s.due_soon]


def record_done(
    incident: Incident, duty_id: str, *, done_on: date, how: str, actor: str
) -> Obligation:
    if duty_id not in {d.id for d in catalogue()[1]}:
        raise ObligationError("Unknown duty.")
    how = (how or "").strip()
    if not how:
        raise ObligationError("Say how it was done (a reference, a filing number).")
    if done_on > clock.now().date():
        raise ObligationError("The date it was done cannot be in the future.")
    existing = db.session.scalar(
        select(Obligation).where(
            Obligation.incident_id == incident.id, Obligation.duty_id == duty_id
        )
    )
    obligation = existing or Obligation(incident_id=incident.id, duty_id=duty_id)
    obligation.done_on, obligation.how, obligation.done_by = done_on, how[:500], actor
    obligation.recorded_at = clock.now()
    db.session.add(obligation)
    audit.record(
        "obligation.done",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"duty": duty_id},
    )
    db.session.flush()
    return obligation


def notice_evidence(incident: Incident) -> dict:
    """What shows individuals were notified: notices emailed and letters mailed (with dates)."""
    from portal.models import Notice
    from portal.services.letters import mailing_evidence
    from portal.services.notices import notice_count

    mailed = mailing_evidence(incident)
    emailed = db.session.scalar(select(notice_count(incident.id, Notice.sent_at.is_not(None))))
    return {
        "emailed": int(emailed or 0),
        "letters_mailed": mailed.letters,
        "letters_first_mailed_on": mailed.first_on,
        "letters_last_mailed_on": mailed.last_on,
    }
