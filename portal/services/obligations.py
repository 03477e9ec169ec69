"""The legal clock: which notification duties apply to an incident, their deadlines, and done."""

from __future__ import annotations

import csv
import io
import json
import tomllib
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import case, false, func, or_, select

from portal import clock, spreadsheet
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Customer,
    Exposure,
    Incident,
    Notice,
    Obligation,
    OutboxMessage,
)
from portal.regions import EU_EEA
from portal.services import audit

CATALOGUE = Path(__file__).resolve().parent.parent / "obligations" / "catalogue.toml"
# Protected health information under HIPAA, as the data classes name it.
PHI_CLASSES = ("medical_records", "health_insurance")
SOON = timedelta(hours=48)
CLOCKS = ("hours", "days", "business_days", "after_year_end", "undue_delay")
STARTS = ("discovery", "materiality", "notified")
KINDS = ("state", "eu_residents", "uk_residents", "hipaa", "materiality", "nydfs", "setting")


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
    # "campaign": a duty to notify individuals, carried out by the portal's own notices.
    fulfilled_by: str = ""


def _duty(raw: dict) -> Duty:
    duty = Duty(
        raw["id"],
        raw["name"],
        raw["recipient"],
        raw["clock"],
        int(raw["amount"]),
        raw["from"],
        dict(raw["applies"]),
        raw["source"],
        raw.get("fulfilled_by", ""),
    )
    # A mistyped rule would silently drop a legal duty: refuse the file instead.
    if duty.clock not in CLOCKS or duty.start not in STARTS:
        raise ValueError(f"duty {duty.id}: unknown clock {duty.clock!r} or from {duty.start!r}")
    if duty.applies.get("kind") not in KINDS or not duty.source.strip():
        raise ValueError(f"duty {duty.id}: unknown rule or no source")
    if duty.fulfilled_by not in ("", "campaign"):
        raise ValueError(f"duty {duty.id}: unknown fulfilled_by {duty.fulfilled_by!r}")
    return duty


@cache
def catalogue() -> tuple[str, tuple[Duty, ...]]:
    """(as-of date, duties), read once from the reviewed data file and checked."""
    raw = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    duties = tuple(_duty(d) for d in raw["duties"])
    if len({d.id for d in duties}) != len(duties):
        raise ValueError("the obligations catalogue names a duty twice")
    return raw["as_of"], duties


def init_app(app) -> None:
    """Read and check the catalogue at start: a wrong file refuses to start, rather than drop a
    legal duty from the page later. A rule's setting must be one the config knows."""
    _as_of, duties = catalogue()
    for duty in duties:
        setting = duty.applies.get("setting")
        if duty.applies["kind"] == "setting" and setting not in app.config:
            raise ValueError(f"duty {duty.id}: unknown setting {setting!r}")


# --- US federal holidays (5 U.S.C. 6103), for the SEC's business days -------------------------


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """A holiday on a Saturday is observed the Friday before, on a Sunday the Monday after
    (5 U.S.C. 6103(b); Executive Order 11582)."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@cache
def federal_holidays(year: int) -> frozenset[date]:
    """The days federal offices close in `year`, as observed (may include 31 December for the
    next year's New Year's Day falling on a Saturday)."""
    mon, thu = 0, 3
    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4), date(year, 11, 11)]
    fixed.append(date(year, 12, 25))
    days = {_observed(d) for d in fixed}
    days |= {
        _nth_weekday(year, 1, mon, 3),  # Birthday of Martin Luther King, Jr.
        _nth_weekday(year, 2, mon, 3),  # Washington's Birthday
        _last_weekday(year, 5, mon),  # Memorial Day
        _nth_weekday(year, 9, mon, 1),  # Labor Day
        _nth_weekday(year, 10, mon, 2),  # Columbus Day
        _nth_weekday(year, 11, thu, 4),  # Thanksgiving Day
    }
    following = _observed(date(year + 1, 1, 1))
    if following.year == year:
        days.add(following)
    return frozenset(d for d in days if d.year == year)


def is_business_day(day: date) -> bool:
    """Not a Saturday, Sunday or federal holiday (SEC Rule 0-3's business day)."""
    return day.weekday() < 5 and day not in federal_holidays(day.year)


def add_business_days(start: date, days: int) -> date:
    """The `days`-th business day after `start`."""
    current = start
    while days:
        current += timedelta(days=1)
        if is_business_day(current):
            days -= 1
    return current


# --- The facts that decide the duties ---------------------------------------------------------


@dataclass(frozen=True)
class RegionCampaign:
    """The portal's notices to the residents of one region."""

    notices: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None


@dataclass(frozen=True)
class Facts:
    """What decides the duties: residents per region, those with health data, the campaign."""

    residents: dict[str, int]
    health_residents: dict[str, int]
    classes: set[str] = field(default_factory=set)
    campaign: dict[str, RegionCampaign] = field(default_factory=dict)
    # Postal notice only: per region, the people who still need a letter.
    letters: dict[str, int] = field(default_factory=dict)


def _campaign_by_region(incident: Incident) -> dict[str, RegionCampaign]:
    """One aggregate query: the incident's notices per region of their readers."""
    sent = Notice.sent_at.is_not(None)
    failed = ~sent & (OutboxMessage.status == "failed")
    # Neither sent nor failed for good: queued, retrying, or its message not written yet.
    pending = ~sent & (OutboxMessage.id.is_(None) | (OutboxMessage.status != "failed"))

    def notices_where(condition):
        return func.count(func.distinct(case((condition, Notice.id))))

    rows = db.session.execute(
        select(
            Customer.region,
            func.count(func.distinct(Notice.id)),
            notices_where(sent),
            notices_where(failed),
            notices_where(pending),
            func.min(Notice.sent_at),
            func.max(Notice.sent_at),
        )
        .select_from(Notice)
        .join(Customer, Customer.id == Notice.customer_id)
        .outerjoin(OutboxMessage, OutboxMessage.notice_id == Notice.id)
        .where(Notice.incident_id == incident.id)
        .group_by(Customer.region)
    )
    return {
        region: RegionCampaign(int(n), int(s), int(f), int(p), first, last)
        for region, n, s, f, p, first, last in rows
    }


def facts(incident: Incident) -> Facts:
    """A few aggregate queries, however many customers."""
    per_region = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id)
        .group_by(Customer.region)
    )
    health = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id, Exposure.data_class.in_(PHI_CLASSES))
        .group_by(Customer.region)
    )
    classes = set(
        db.session.scalars(
            select(Exposure.data_class).where(Exposure.incident_id == incident.id).distinct()
        )
    )
    return Facts(
        dict(per_region.all()),
        dict(health.all()),
        classes,
        _campaign_by_region(incident),
        _letters_by_region(incident),
    )


def _is_uk(region: str) -> bool:
    return region == "GB" or region.startswith("GB-")


def _is_eu(region: str) -> bool:
    return bool(region) and region.split("-")[0] in EU_EEA


def _applies(duty: Duty, incident: Incident, f: Facts) -> bool:
    rule = duty.applies
    kind = rule["kind"]
    if kind == "eu_residents":
        return any(_is_eu(region) for region in f.residents)
    if kind == "uk_residents":
        return any(_is_uk(region) for region in f.residents if region)
    if kind == "state":
        return f.residents.get(rule["region"], 0) >= rule["min_residents"]
    if kind == "hipaa":
        # The role decides the duty; the data decides whether HIPAA is engaged at all.
        phi = sum(f.health_residents.values())
        if incident.hipaa_role != rule["role"] or phi == 0:
            return False
        if phi < rule.get("min_phi", 0) or phi > rule.get("max_phi", phi):
            return False
        in_state = rule.get("min_phi_in_state", 0)
        return any(n >= in_state for n in f.health_residents.values())
    if kind == "materiality":
        return incident.materiality_on is not None
    if kind == "nydfs":
        return current_app.config["NYDFS_COVERED"] and f.residents.get("US-NY", 0) > 0
    if kind == "setting":
        total = sum(f.residents.values())
        return bool(current_app.config[rule["setting"]]) and total >= rule["min_residents"]
    raise ValueError(f"unknown rule {kind!r} in the obligations catalogue")


def _scope(duty: Duty, f: Facts) -> list[tuple[str, int]]:
    """The regions a duty counts, with their affected residents (PHI holders for HIPAA)."""
    kind = duty.applies["kind"]
    if kind == "state":
        region = duty.applies["region"]
        return [(region, f.residents.get(region, 0))]
    if kind == "nydfs":
        return [("US-NY", f.residents.get("US-NY", 0))]
    counts = f.health_residents if kind == "hipaa" else f.residents
    keep = {"eu_residents": _is_eu, "uk_residents": _is_uk}.get(kind, lambda region: True)
    return sorted(
        ((r, n) for r, n in counts.items() if keep(r or "")), key=lambda rn: (-rn[1], rn[0] or "")
    )


def _campaign_for(regions: list[str], f: Facts, *, every_region: bool = False) -> RegionCampaign:
    parts = (
        list(f.campaign.values())
        if every_region
        else [f.campaign[r] for r in regions if r in f.campaign]
    )
    firsts = [p.first_sent_at for p in parts if p.first_sent_at]
    lasts = [p.last_sent_at for p in parts if p.last_sent_at]
    return RegionCampaign(
        sum(p.notices for p in parts),
        sum(p.sent for p in parts),
        sum(p.failed for p in parts),
        sum(p.pending for p in parts),
        min(firsts) if firsts else None,
        max(lasts) if lasts else None,
    )


def notified_on(residents: int, campaign: RegionCampaign) -> date | None:
    """The day the campaign finished notifying these residents: every one has a notice, none
    is still waiting to leave, and some were sent. None until then (the clock has not started:
    counting from any other day would be a made-up date)."""
    if not campaign.sent or campaign.pending or campaign.notices < residents:
        return None
    return campaign.last_sent_at.date()


def deadline(duty: Duty, incident: Incident, notified: date | None = None) -> datetime | None:
    """When the duty falls due (UTC); None when the rule sets no fixed time, or when it counts
    from the residents' notices and those have not all gone yet."""
    if duty.clock == "undue_delay":
        return None
    if duty.start == "materiality":
        day = incident.materiality_on
    elif duty.start == "notified":
        day = notified
    else:
        day = incident.discovered_on
    if day is None:
        return None
    if duty.clock == "hours":
        return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(hours=duty.amount)
    if duty.clock == "business_days":
        return datetime.combine(add_business_days(day, duty.amount), time.max, tzinfo=UTC)
    if duty.clock == "after_year_end":
        day = date(day.year, 12, 31)
    return datetime.combine(day + timedelta(days=duty.amount), time.max, tzinfo=UTC)


@dataclass(frozen=True)
class DutyStatus:
    incident: Incident
    duty: Duty
    due_at: datetime | None
    done: Obligation | None
    # The regions the duty counts and their affected residents.
    counts: list[tuple[str, int]] = field(default_factory=list)
    # For a duty the campaign carries out, or one counted from its notices: the notices sent.
    campaign: RegionCampaign | None = None
    # Set when the campaign has notified every resident the duty counts (the day it finished).
    notified: date | None = None
    # Postal notice only: the residents the duty counts who still need a letter.
    letters: int = 0

    @property
    def residents(self) -> int:
        return sum(n for _r, n in self.counts)

    @property
    def by_campaign(self) -> bool:
        """A duty to notify individuals that the portal's campaign has carried out."""
        return self.duty.fulfilled_by == "campaign" and self.notified is not None

    @property
    def closed(self) -> bool:
        return self.done is not None or self.by_campaign

    @property
    def without_undue_delay(self) -> bool:
        return self.duty.clock == "undue_delay"

    @property
    def waiting_on_notices(self) -> bool:
        """Counted from the residents' notices, which have not all gone yet."""
        return self.duty.start == "notified" and self.notified is None

    @property
    def overdue(self) -> bool:
        return not self.closed and self.due_at is not None and self.due_at < clock.now()

    @property
    def due_soon(self) -> bool:
        if self.closed or self.due_at is None or self.overdue:
            return False
        return self.due_at - clock.now() <= SOON

    @property
    def days_left(self) -> int | None:
        return None if self.due_at is None else (self.due_at.date() - clock.now().date()).days


def _status(duty: Duty, incident: Incident, f: Facts, done: Obligation | None) -> DutyStatus:
    counts = _scope(duty, f)
    campaign = notified = None
    letters = 0
    if duty.fulfilled_by == "campaign" or duty.start == "notified":
        regions = [r for r, _n in counts]
        # HIPAA's individuals are everyone with health data; the campaign writes to everyone.
        everyone = duty.applies["kind"] == "hipaa"
        campaign = _campaign_for(regions, f, every_region=everyone)
        letters = sum(n for r, n in f.letters.items() if everyone or r in regions)
        # Where notice must go by post, the residents are notified once their letters are
        # sent too: the emails alone do not carry out the duty.
        if not letters:
            notified = notified_on(sum(n for _r, n in counts), campaign)
    return DutyStatus(
        incident,
        duty,
        deadline(duty, incident, notified),
        done,
        counts,
        campaign,
        notified,
        letters,
    )


def for_incident(incident: Incident) -> list[DutyStatus]:
    """Every duty that applies, open ones first and soonest deadline first, with what was
    recorded as done or carried out by the campaign."""
    f = facts(incident)
    done = {
        o.duty_id: o
        for o in db.session.scalars(select(Obligation).where(Obligation.incident_id == incident.id))
    }
    statuses = [
        _status(duty, incident, f, done.get(duty.id))
        for duty in catalogue()[1]
        if _applies(duty, incident, f)
    ]
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(statuses, key=lambda s: (s.closed, s.due_at or never, s.duty.id))


def attention(incidents: list[Incident]) -> list[DutyStatus]:
    """Open duties that are overdue or due within 48 hours, across incidents."""
    return [s for incident in incidents for s in for_incident(incident) if s.overdue or s.due_soon]


@dataclass(frozen=True)
class Evidence:
    """What the campaign did, for the record: its notices, failures and their follow-up."""

    campaign: RegionCampaign
    requeued: int  # failed notices sent again from the campaign page (an address since fixed)
    letters: int | None  # people who still need a letter (postal notice only), else None
    # Who approved what went out to individuals (notices, letters), and when: four eyes.
    approvals: tuple[ApprovalRecord, ...] = ()


@dataclass(frozen=True)
class ApprovalRecord:
    subject: str  # campaign or letters
    state: str  # approved, or overridden by two admins
    by: str  # the approver's address, or the two admins' addresses
    at: datetime


def approval_records(incident: Incident) -> tuple[ApprovalRecord, ...]:
    """The approvals of the notices and letters to individuals, in time order."""
    from portal.services import approvals

    # Approved once is evidence, even if superseded later (a new import asked approval again).
    found = [
        a
        for a in approvals.for_incident(incident)
        if a.subject in ("campaign", "letters") and a.approved_at is not None
    ]
    people = approvals.staff_by_id(
        [a.approved_by_id for a in found] + [i for a in found for i in approvals.overriders(a)]
    )

    def name(i):
        return people[i].email if i in people else "?"

    records = []
    for a in found:
        two = approvals.overriders(a)
        overridden = len(two) == 2 and a.approved_by_id is None
        by = " + ".join(name(i) for i in two) if overridden else name(a.approved_by_id)
        records.append(
            ApprovalRecord(a.subject, "overridden" if overridden else "approved", by, a.approved_at)
        )
    return tuple(records)


def evidence(incident: Incident) -> Evidence:
    """The campaign's notices for the whole incident, and who still needs a letter."""
    f = facts(incident)
    requeued = 0
    for details in db.session.scalars(
        select(AuditEvent.details).where(
            AuditEvent.action == "notices.requeued", AuditEvent.subject_id == incident.slug
        )
    ):
        requeued += int(json.loads(details or "{}").get("count", 0))
    letters = sum(f.letters.values()) if incident.postal_notice else None
    return Evidence(
        _campaign_for([], f, every_region=True), requeued, letters, approval_records(incident)
    )


def _letters_by_region(incident: Incident) -> dict[str, int]:
    """When the incident needs postal notice: per region, how many people still need a letter
    (no consent to email on record, or their notice's email failed for good); else empty."""
    if not incident.postal_notice:
        return {}
    failed_email = (
        select(Notice.customer_id)
        .join(OutboxMessage, OutboxMessage.notice_id == Notice.id)
        .where(
            Notice.incident_id == incident.id,
            OutboxMessage.status == "failed",
            Notice.sent_at.is_(None),
        )
    )
    # HIPAA: first-class mail unless the person agreed to email (45 CFR 164.404(d)(1)(i)).
    no_consent = or_(Customer.email_consent.is_(None), Customer.email_consent == false())
    rows = db.session.execute(
        select(Customer.region, func.count(func.distinct(Customer.id)))
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(
            Exposure.incident_id == incident.id,
            or_(no_consent, Customer.id.in_(failed_email)),
        )
        .group_by(Customer.region)
    )
    return {region: int(n) for region, n in rows}


def record_done(
    incident: Incident, duty_id: str, *, done_on: date, how: str, actor: str
) -> Obligation:
    """Record that a duty was carried out, when and how (a reference)."""
    if duty_id not in {d.id for d in catalogue()[1]}:
        raise ObligationError(_("Unknown duty."))
    how = (how or "").strip()
    if not how:
        raise ObligationError(_("Say how it was done (a reference, a filing number)."))
    if done_on > clock.now().date():
        raise ObligationError(_("The date it was done cannot be in the future."))
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


# The sample notice's reader: made up, so the pack carries no one's personal data.
SAMPLE_LINK_PATH = "/a/SAMPLE-LINK-NOT-VALID"
SAMPLE_REFERENCE = "SAMPLE-0000"


def sample_notices(incident: Incident, regions: list[str]) -> dict[str, object]:
    """The incident's notice as a placeholder reader in each region gets it (each state's
    attorney general wants the notice its residents got): every data class the imports
    involved, no masked fragment, a link and reference code that open nothing."""
    from portal.services.notices import Variants, data_classes_involved

    shown = tuple((key, False) for key, _count in data_classes_involved(incident))
    variants = Variants(incident)
    values = {"link": current_app.config["BASE_URL"] + SAMPLE_LINK_PATH, "code": SAMPLE_REFERENCE}
    return {region: variants.compose("en", shown, region, values=values) for region in regions}


def filing_pack(incident: Incident, *, actor: str) -> bytes:
    """A zip for the attorneys general and regulators: the affected counts per region, the
    duties that apply, and a sample notice. Counts and text only: no personal data."""
    f = facts(incident)
    counts = io.StringIO()
    writer = csv.writer(counts)
    writer.writerow(["region", "affected", "with_health_data", "notices_sent", "notices_failed"])
    for region in sorted(f.residents, key=lambda r: r or ""):
        sent = f.campaign.get(region, RegionCampaign())
        writer.writerow(
            [
                spreadsheet.cell(region or "unknown"),
                f.residents[region],
                f.health_residents.get(region, 0),
                sent.sent,
                sent.failed,
            ]
        )
    duties = io.StringIO()
    writer = csv.writer(duties)
    writer.writerow(["duty", "recipient", "residents", "deadline", "source"])
    for s in for_incident(incident):
        due = (
            s.due_at.isoformat()
            if s.due_at
            else ("without undue delay" if s.without_undue_delay else "after the notices")
        )
        texts = (s.duty.name, s.duty.recipient)
        writer.writerow(
            [*map(spreadsheet.cell, texts), s.residents, due, spreadsheet.cell(s.duty.source)]
        )
    samples = sample_notices(incident, sorted(f.residents, key=lambda r: r or ""))
    as_of, _duties = catalogue()
    readme = (
        f"Filing pack for incident {incident.slug}: {incident.title}\n"
        f"Made {clock.now().isoformat(timespec='seconds')} by the breach portal.\n"
        f"Discovered {incident.discovered_on.isoformat()}"
        + (f"; occurred {incident.occurred_on.isoformat()}" if incident.occurred_on else "")
        + (f" to {incident.occurred_to.isoformat()}" if incident.occurred_to else "")
        + ".\n\n"
        "counts.csv        affected people per region (counts only)\n"
        "duties.csv        the duties the catalogue computes, with their sources\n"
        "sample-notice-REGION.*   the notice as sent to a placeholder reader living there\n"
        "                         (no personal data)\n\n"
        f"Catalogue as of {as_of}. NOT LEGAL ADVICE: confirm every duty with counsel.\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as pack:
        pack.writestr("README.txt", readme)
        pack.writestr("counts.csv", counts.getvalue())
        pack.writestr("duties.csv", duties.getvalue())
        for region, notice in samples.items():
            name = f"sample-notice-{region or 'unknown'}"
            pack.writestr(f"{name}.txt", f"Subject: {notice.subject}\n\n{notice.text}")
            pack.writestr(f"{name}.html", notice.html)
    audit.record(
        "obligations.filing_pack",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
    )
    db.session.flush()
    return buffer.getvalue()


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
        # Who approved the notices and letters, and when (four eyes): the duty's evidence too.
        "approvals": [
            {"subject": r.subject, "state": r.state, "by": r.by, "at": r.at}
            for r in approval_records(incident)
        ],
    }
