"""Admin: importing who was affected: upload a CSV, check it, then confirm the import."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from portal.services import background
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404, job_or_404
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


# Asked before the form is shown when the proof is already stale; a file sent after the proof
# went stale is kept (freshness.py) and imported once the admin has confirmed it is them.
@bp.route("/incidents/<slug>/import", methods=["GET", "POST"])
@staff("admin")
@fresh_within(minutes=5)
def upload_import(slug: str):
    item = incident_or_404(slug)
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash(_("Choose a CSV file to upload."), "error")
            return redirect(url_for("admin.upload_import", slug=slug))
        folder = Path(current_app.instance_path) / "uploads"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{secrets.token_hex(16)}.csv"  # never the uploader's file name
        upload.save(path)
        path.chmod(0o600)
        job = background.submit(
            "validate_import",
            # The report is written by the worker: in the language of the admin who will read it.
            {
                "path": str(path),
                "incident_id": item.id,
                "actor": current_actor(),
                "locale": str(get_locale()),
            },
            actor=current_actor(),
        )
        return redirect(url_for("admin.job", public_id=job.public_id))
    return render_template("admin/import.html", incident=item, action=ActionForm())


@bp.post("/jobs/<public_id>/confirm")
@staff("admin")
@fresh_within(minutes=5)
def confirm_import(public_id: str):
    item = job_or_404(public_id)
    report = background.report(item)
    if item.kind != "validate_import" or item.status != "done" or report.get("problem_count"):
        flash(_("Only a file that passed validation can be imported."), "error")
        return redirect(url_for("admin.job", public_id=public_id))
    payload = background.payload(item)
    follow, new = background.submit_after(
        item,
        "import_customers",
        {**payload, "rows": report.get("rows", 0), "actor": current_actor()},
        actor=current_actor(),
    )
    if not new:  # a second click on "Import them", or the form sent again
        flash(_("This file was already sent for import: here is that import."), "info")
    return redirect(url_for("admin.job", public_id=follow.public_id))
