"""Admin: a background job's page and its progress."""

from __future__ import annotations

from flask import make_response, render_template

from portal.services import background
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import job_or_404
from portal.web.staff.forms import ActionForm


@bp.get("/jobs/<public_id>")
@staff("admin")
def job(public_id: str):
    item = job_or_404(public_id)
    return render_template(
        "admin/job.html", job=item, report=background.report(item), action=ActionForm()
    )


@bp.get("/jobs/<public_id>/progress")
@staff("admin")
def job_progress(public_id: str):
    item = job_or_404(public_id)
    response = make_response(render_template("admin/_job_progress.html", job=item))
    if item.status in ("done", "failed"):
        response.headers["HX-Refresh"] = "true"  # show the full report
    return response
