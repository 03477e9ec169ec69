"""Admin: an incident's printed letters: due, produced, mailed; build them; download a batch."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Letter
from portal.services import approvals, audit, background
from portal.services import letters as letters_service
from portal.unit_of_work import write_is_the_point
from portal.web.access import staff
from portal.web.admin.approvals import approval_state
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import MailedForm
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


def _folder(slug: str) -> Path:
    """Where the console keeps an incident's print files: the instance folder, never static."""
    return Path(current_app.instance_path) / "letters" / slug


def _batches(incident_id: int) -> list[tuple[str, int, int]]:
    """(file, letters, mailed) for each produced batch, newest first."""
    rows = db.session.execute(
        select(Letter.batch_file, func.count(), func.count(Letter.mailed_on))
        .where(Letter.incident_id == incident_id, Letter.batch_file.is_not(None))
        .group_by(Letter.batch_file)
        .order_by(Letter.batch_file.desc())
    )
    return [(name, int(n), int(m)) for name, n, m in rows]


@bp.get("/incidents/<slug>/letters")
@staff("admin")
def letters(slug: str):
    item = incident_or_404(slug)
    return render_template(
        "admin/letters.html",
        incident=item,
        counts=letters_service.counts(item),
        batches=_batches(item.id),
        approval=approval_state("letters", item.slug, letters_service.pinned(item)),
        action=ActionForm(),
        mailed=MailedForm(),
    )


@bp.post("/incidents/<slug>/letters/build")
@staff("admin")
# A print file holds the names and addresses of everyone in it: a fresh proof, as for exports.
@fresh_within(minutes=5)
def letters_build(slug: str):
    item = incident_or_404(slug)
    content = letters_service.pinned(item)
    if content["total"]:
        try:
            # Four eyes: legal approved these letters' words and counts before any is printed.
            approvals.require("letters", item.slug, content)
        except approvals.NotApproved as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.letters", slug=slug))
    # A background job: 100,000 letters take some seven minutes, far past a request's time.
    job = background.submit(
        "build_letters",
        {"incident_id": item.id, "out_dir": str(_folder(slug)), "actor": current_actor()},
        actor=current_actor(),
    )
    return redirect(url_for("admin.job", public_id=job.public_id))


@bp.post("/incidents/<slug>/letters/mailed")
@staff("admin")
# The record of notice by post that regulators are shown: a fresh proof, and an audit event
# (letters.mailed, by the service). A file sent on a stale proof is kept and finished after it.
@fresh_within(minutes=5)
def letters_mailed(slug: str):
    item = incident_or_404(slug)
    form = MailedForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash(errors[0], "error")
        return redirect(url_for("admin.letters", slug=slug))
    folder = Path(current_app.instance_path) / "uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Names and addresses: never the uploader's file name, readable by the portal alone, and
    # gone once read.
    path = folder / f"{secrets.token_hex(16)}.csv"
    form.manifest.data.save(path)
    path.chmod(0o600)
    try:
        count = letters_service.mark_mailed(item, path, form.mailed_on.data, actor=current_actor())
    except letters_service.LetterError as exc:
        flash(str(exc), "error")  # the service changed nothing
        return redirect(url_for("admin.letters", slug=slug))
    finally:
        path.unlink(missing_ok=True)
    flash(
        _(
            "%(count)d letter(s) recorded as mailed on %(day)s.",
            count=count,
            day=format_date(form.mailed_on.data, "long"),
        ),
        "info",
    )
    return redirect(url_for("admin.letters", slug=slug))


@bp.get("/incidents/<slug>/letters/files/<name>")
@staff("admin")
# Names and addresses leave the portal in this file: a fresh proof, and an audit event.
@fresh_within(minutes=5)
def letters_download(slug: str, name: str):
    item = incident_or_404(slug)
    known = {batch for batch, _n, _m in _batches(item.id)}
    manifests = {b.rsplit("-", 1)[0] + "-manifest.csv" for b in known}
    # Only a file this incident's letters name: no path from the URL reaches the disk.
    if name not in known | manifests:
        abort(404)
    path = _folder(slug) / name
    if not path.is_file():
        abort(404)
    write_is_the_point(AuditEvent)  # a download of personal data is always recorded
    audit.record(
        "letters.downloaded",
        actor=current_actor(),
        subject_type="incident",
        subject_id=item.slug,
        details={"file": name},
    )
    return send_file(path, as_attachment=True, download_name=name, max_age=0)
