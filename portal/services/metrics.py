"""The numbers: the response funnel per incident, daily activity, cases and the outbox.

Every figure is one aggregate query (scalar subqueries, GROUP BY): the cost does not grow with
the number of customers, only with the number of incidents.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import String, func, select

from portal import clock
from portal.extensions import db
from portal.models import (
    Case,
    Customer,
    Enrollment,
    Exposure,
    GuidanceProgress,
    Incident,
    Notice,
    ProtectionOffer,
)
from portal.models.case import CaseStatus
from portal.services import outbox
from portal.services.letters import mailed_count
from portal.services.notices import affected_count, notice_count

STAGES = (
    "affected",
    "delivered",
    "mailed",
    "opened",
    "verified",
    "plan_viewed",
    "steps_done",
    "password_reset",
    "enrolled",
)


@dataclass(frozen=True)
class Funnel:
    incident: Incident
    counts: dict[str, int]

    def percent(self, stage: str) -> float:
        affected = self.counts["affected"]
        return round(100 * self.counts[stage] / affected, 1) if affected else 0.0


def funnel(incident: Incident) -> Funnel:
    """All nine figures for one incident in a single query."""
    affected_ids = (
        select(Exposure.customer_id)
        .where(Exposure.incident_id == incident.id)
        .distinct()
        .scalar_subquery()
    )

    def notices(condition):
        return notice_count(incident.id, condition)

    row = db.session.execute(
        select(
            affected_count(incident.id),
            notices(Notice.sent_at.is_not(None)),
            # Letters a mail house posted (recorded by `portal letters mark-mailed`).
            mailed_count(incident.id),
            notices(Notice.opened_at.is_not(None)),
            notices(Notice.verified_at.is_not(None)),
            select(func.count())
            .select_from(Customer)
            .where(Customer.id.in_(affected_ids), Customer.plan_viewed_at.is_not(None))
            .scalar_subquery(),
            select(func.count(func.distinct(GuidanceProgress.customer_id)))
            .where(GuidanceProgress.customer_id.in_(affected_ids))
            .scalar_subquery(),
            select(func.count())
            .select_from(Customer)
            .where(Customer.id.in_(affected_ids), Customer.password_changed_at.is_not(None))
            .scalar_subquery(),
            select(func.count())
            .select_from(Enrollment)
            .join(ProtectionOffer, ProtectionOffer.id == Enrollment.offer_id)
            .where(ProtectionOffer.incident_id == incident.id, Enrollment.status == "enrolled")
            .scalar_subquery(),
        )
    ).one()
    return Funnel(incident, dict(zip(STAGES, (int(v or 0) for v in row), strict=True)))


@dataclass(frozen=True)
class Day:
    day: date
    opened: int
    verified: int


def daily(days: int = 14) -> list[Day]:
    """Links opened and customers verified per day, over the last `days` days (two queries)."""
    since = clock.now() - timedelta(days=days)

    def per_day(column):
        # date() exists on both SQLite (text) and PostgreSQL (a date): read either as ISO text.
        day = func.date(column, type_=String)
        rows = db.session.execute(select(day, func.count()).where(column >= since).group_by(day))
        return {date.fromisoformat(str(d)[:10]): n for d, n in rows}

    opened, verified = per_day(Notice.opened_at), per_day(Notice.verified_at)
    today = clock.now().date()
    return [
        Day(d, opened.get(d, 0), verified.get(d, 0))
        for d in (today - timedelta(days=n) for n in range(days - 1, -1, -1))
    ]


@dataclass(frozen=True)
class CaseFigures:
    open: int
    overdue: int


def case_figures() -> CaseFigures:
    now = clock.now()
    open_, overdue = db.session.execute(
        select(
            func.count().filter(Case.status != CaseStatus.RESOLVED),
            func.count().filter(Case.status != CaseStatus.RESOLVED, Case.due_at < now),
        )
    ).one()
    return CaseFigures(open_, overdue)


@dataclass(frozen=True)
class Figures:
    funnels: list[Funnel]
    days: list[Day]
    cases: CaseFigures
    outbox: outbox.OutboxStatus


def figures(incidents: list[Incident]) -> Figures:
    return Figures([funnel(i) for i in incidents], daily(), case_figures(), outbox.status())


def as_csv(data: Figures) -> str:
    """The funnel as CSV, one row per incident and stage."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["incident", "stage", "count", "percent_of_affected"])
    for f in data.funnels:
        for stage in STAGES:
            writer.writerow([f.incident.slug, stage, f.counts[stage], f.percent(stage)])
    return out.getvalue()
