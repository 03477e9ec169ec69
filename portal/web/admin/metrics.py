"""Admin: the funnel from notice to protection, on the page and as a CSV export."""

from __future__ import annotations

from flask import render_template
from flask_babel import lazy_gettext as _l

from portal import unit_of_work
from portal.models import AuditEvent
from portal.services import audit, csp_reports, genuine, incidents, metrics
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor
from portal.web.freshness import fresh_within

STAGE_LABELS = {
    "affected": _l("Affected"),
    "delivered": _l("Notice delivered"),
    "mailed": _l("Letter mailed"),
    "opened": _l("Link opened"),
    "verified": _l("Verified"),
    "plan_viewed": _l("Plan viewed"),
    "steps_done": _l("Steps done"),
    "password_reset": _l("Password reset"),
    "enrolled": _l("Enrolled"),
}


@bp.get("/metrics")
@staff("admin")
def metrics_page():
    data = metrics.figures(incidents.all_incidents())
    peak = max([1] + [max(d.opened, d.verified) for d in data.days])
    return render_template(
        "admin/metrics.html",
        data=data,
        stages=metrics.STAGES,
        labels=STAGE_LABELS,
        peak=peak,
        csp_reports=csp_reports.count_today(),
        genuine_checks=genuine.counts_today(),
    )


@bp.get("/metrics.csv")
@staff("admin")
@fresh_within(minutes=5)  # an export: password and code again first, then the download itself
def metrics_csv():
    body = metrics.as_csv(metrics.figures(incidents.all_incidents()))
    # Recorded on this GET on purpose: an export of the figures is the point of the request.
    unit_of_work.write_is_the_point(AuditEvent)
    audit.record("metrics.exported", actor=current_actor())
    return (
        body,
        200,
        {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="portal-funnel.csv"',
        },
    )
