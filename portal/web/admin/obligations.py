"""Admin: the legal duties to notify, their deadlines, and recording what was done."""

from __future__ import annotations

from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.services import incidents, obligations
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


@bp.get("/obligations")
@staff("admin")
def obligation_list():
    as_of, _duties = obligations.catalogue()
    return render_template(
        "admin/obligations.html",
        as_of=as_of,
        action=ActionForm(),
        per_incident=[
            (i, obligations.for_incident(i), obligations.evidence(i))
            for i in incidents.all_incidents()
        ],
    )


@bp.post("/obligations/<slug>/<duty_id>")
@staff("admin")
def record_obligation(slug: str, duty_id: str):
    item = incident_or_404(slug)
    try:
        done_on = date.fromisoformat(request.form.get("done_on", ""))
    except ValueError:
        flash(_("Give the date it was done, like 2026-11-20."), "error")
        return redirect(url_for("admin.obligation_list"))
    try:
        obligations.record_done(
            item, duty_id, done_on=done_on, how=request.form.get("how", ""), actor=current_actor()
        )
    except obligations.ObligationError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Recorded."), "info")
    return redirect(url_for("admin.obligation_list"))


@bp.post("/obligations/<slug>/filing-pack")
@staff("admin")
@fresh_within(minutes=5)  # an export: password and code again first, then the download itself
def filing_pack(slug: str):
    # A POST (its CSRF token checked like every POST's), not a link: each download is recorded
    # in the audit trail.
    # The pack holds counts and a sample notice for a made-up reader, never personal data.
    item = incident_or_404(slug)
    body = obligations.filing_pack(item, actor=current_actor())
    return (
        body,
        200,
        {
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="filing-pack-{item.slug}.zip"',
            "Cache-Control": "no-store",
        },
    )
