"""Admin: the staff and their sessions (each act re-authenticated and audited)."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from portal import unit_of_work
from portal.extensions import db
from portal.models import AuditEvent, Incident, IncidentUpdate, StaffMember
from portal.models.audit import staff_actor
from portal.services import audit, background, incidents, metrics, obligations, updates
from portal.services import notices as notices_service
from portal.services import staff as staff_service
from portal.web.access import staff
from portal.web.admin.forms import (
    IncidentForm,
    NewIncidentForm,
    UpdateForm,
    translation_data,
    translations_from,
)
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _target(public_id: str) -> StaffMember:
    member = db.session.scalar(select(StaffMember).where(StaffMember.public_id == public_id))
    if member is None:
        abort(404)
    return member


@bp.get("/staff")
@staff("admin")
def staff_list():
    members = staff_service.members()
    return render_template(
        "admin/staff.html",
        members=members,
        action=ActionForm(),
        sessions={m.id: staff_service.live_sessions(m) for m in members},
    )


@bp.post("/staff/<public_id>/disable")
@staff("admin")
@fresh_within(minutes=5)
def disable(public_id: str):
    member = _target(public_id)
    if member.id == current_user.staff.id:
        flash(_("You cannot disable your own account."), "error")
    else:
        staff_service.disable(member, actor=_actor())
        flash(_("Disabled; every session of theirs has ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/end-sessions")
@staff("admin")
@fresh_within(minutes=5)
def end_sessions(public_id: str):
    staff_service.end_sessions(_target(public_id), actor=_actor())
    flash(_("Their sessions have ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/reset-mfa")
@staff("admin")
@fresh_within(minutes=5)
def reset_mfa(public_id: str):
    link = staff_service.reset_mfa(_target(public_id), actor=_actor())
    return render_template("admin/setup_link.html", link=link)


def _actor() -> str:
    return staff_actor(current_user.staff)


def _incident(slug: str):
    try:
        return incidents.get_by_slug(slug)
    except incidents.IncidentError:
        abort(404)


@bp.get("/")
@staff("admin")
def console():
    items = incidents.all_incidents()
    return render_template(
        "admin/console.html", incidents=items, attention=obligations.attention(items)
    )


@bp.get("/obligations")
@staff("admin")
def obligation_list():
    as_of, _duties = obligations.catalogue()
    return render_template(
        "admin/obligations.html",
        as_of=as_of,
        action=ActionForm(),
        per_incident=[(i, obligations.for_incident(i)) for i in incidents.all_incidents()],
    )


@bp.post("/obligations/<slug>/<duty_id>")
@staff("admin")
def record_obligation(slug: str, duty_id: str):
    item = _incident(slug)
    try:
        done_on = date.fromisoformat(request.form.get("done_on", ""))
    except ValueError:
        flash(_("Give the date it was done, like 2026-11-20."), "error")
        return redirect(url_for("admin.obligation_list"))
    try:
        obligations.record_done(
            item, duty_id, done_on=done_on, how=request.form.get("how", ""), actor=_actor()
        )
    except obligations.ObligationError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Recorded."), "info")
    return redirect(url_for("admin.obligation_list"))


@bp.route("/incidents/new", methods=["GET", "POST"])
@staff("admin")
def new_incident():
    form = NewIncidentForm()
    if form.validate_on_submit():
        try:
            item = incidents.create_incident(
                slug=form.slug.data.strip(),
                title=form.title.data,
                discovered_on=form.discovered_on.data,
                actor=_actor(),
            )
        except incidents.IncidentError as exc:
            form.slug.errors.append(str(exc))
        else:
            return redirect(url_for("admin.incident", slug=item.slug))
    return render_template("admin/new_incident.html", form=form)


@bp.route("/incidents/<slug>", methods=["GET", "POST"])
@staff("admin")
def incident(slug: str):
    item = _incident(slug)
    # Shown values only; saving lists the fields one by one.
    form = IncidentForm(obj=item, data=translation_data(item))
    preview = None
    if form.validate_on_submit():
        fields = {name: getattr(form, name).data for name in incidents.EDITABLE}
        translations = translations_from(form, Incident.translated_fields)
        if request.form.get("action") == "preview":
            # Shown as the customer will see it; nothing saved.
            preview = fields | {"es": translations["es"]}
        else:
            try:
                incidents.update_incident(item, actor=_actor(), translations=translations, **fields)
            except incidents.IncidentError as exc:
                flash(str(exc), "error")
            else:
                flash(_("Saved."), "info")
                return redirect(url_for("admin.incident", slug=slug))
    return render_template(
        "admin/incident.html",
        incident=item,
        form=form,
        preview=preview,
        involved=notices_service.data_classes_involved(item),
        updates=updates.for_incident(item),
        update_form=UpdateForm(),
        action=ActionForm(),
    )


@bp.post("/incidents/<slug>/updates")
@staff("admin")
def new_update(slug: str):
    item = _incident(slug)
    form = UpdateForm()
    if form.validate_on_submit():
        try:
            updates.draft(
                item,
                form.title.data,
                form.body.data,
                actor=_actor(),
                translations=translations_from(form, IncidentUpdate.translated_fields),
            )
        except updates.UpdateError as exc:
            flash(str(exc), "error")
        else:
            flash(_("Draft saved. Preview it below, then publish."), "info")
    else:
        flash(_("An update needs a title and a text."), "error")
    return redirect(url_for("admin.incident", slug=slug) + "#updates")


def _update(update_id: int):
    update = updates.get(update_id)
    if update is None:
        abort(404)
    return update


@bp.post("/updates/<int:update_id>/publish")
@staff("admin")
def publish_update(update_id: int):
    update = _update(update_id)
    try:
        updates.publish(update, actor=_actor())
    except updates.UpdateError as exc:
        flash(str(exc), "error")
    else:
        if request.form.get("notify") == "yes":
            job = background.submit("notify_update", {"update_id": update.id}, actor=_actor())
            return redirect(url_for("admin.job", public_id=job.public_id))
    return redirect(url_for("admin.incident", slug=update_slug(update)) + "#updates")


@bp.post("/updates/<int:update_id>/correct")
@staff("admin")
def correct_update(update_id: int):
    update = _update(update_id)
    form = UpdateForm()
    if form.validate_on_submit():
        try:
            updates.correct(
                update,
                form.title.data,
                form.body.data,
                actor=_actor(),
                translations=translations_from(form, IncidentUpdate.translated_fields),
            )
        except updates.UpdateError as exc:
            flash(str(exc), "error")
    else:
        flash(_("A correction needs a title and a text."), "error")
    return redirect(url_for("admin.incident", slug=update_slug(update)) + "#updates")


def update_slug(update) -> str:
    return db.session.get(Incident, update.incident_id).slug


STAGE_LABELS = {
    "affected": _l("Affected"),
    "delivered": _l("Notice delivered"),
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
        "admin/metrics.html", data=data, stages=metrics.STAGES, labels=STAGE_LABELS, peak=peak
    )


@bp.get("/metrics.csv")
@staff("admin")
@fresh_within(minutes=5)  # an export: password and code again first, then the download itself
def metrics_csv():
    body = metrics.as_csv(metrics.figures(incidents.all_incidents()))
    # Recorded on this GET on purpose: an export of the figures is the point of the request.
    unit_of_work.write_is_the_point(AuditEvent)
    audit.record("metrics.exported", actor=_actor())
    return (
        body,
        200,
        {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="portal-funnel.csv"',
        },
    )


def _day(value: str):
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC) if value else None
    except ValueError:
        return None


@bp.get("/audit")
@staff("admin")
def audit_log():
    args = request.args
    try:
        page = int(args.get("page", "1"))
    except ValueError:
        page = 1
    until = _day(args.get("until", ""))
    result = audit.search(
        actor=args.get("actor", "").strip(),
        action=args.get("action", "").strip(),
        subject=args.get("subject", "").strip(),
        since=_day(args.get("since", "")),
        until=until + timedelta(days=1) if until else None,
        page=page,
    )
    return render_template("admin/audit.html", result=result, args=args, action=ActionForm())


@bp.post("/audit/verify")
@staff("admin")
def audit_verify():
    report = audit.verify_chain()
    if report.broken_at is None:
        flash(_("The audit chain is intact (%(count)d events).", count=report.checked), "info")
    else:
        flash(
            _(
                "The audit chain is broken at event %(id)d: %(reason)s",
                id=report.broken_at,
                reason=report.reason,
            ),
            "error",
        )
    audit.record(
        "audit.verified",
        actor=_actor(),
        outcome="success" if report.broken_at is None else "failure",
    )
    return redirect(url_for("admin.audit_log"))


# Asked before the form is shown when the proof is already stale; a file sent after the proof
# went stale is kept (freshness.py) and imported once the admin has confirmed it is them.
@bp.route("/incidents/<slug>/import", methods=["GET", "POST"])
@staff("admin")
@fresh_within(minutes=5)
def upload_import(slug: str):
    item = _incident(slug)
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
            {"path": str(path), "incident_id": item.id, "actor": _actor()},
            actor=_actor(),
        )
        return redirect(url_for("admin.job", public_id=job.public_id))
    return render_template("admin/import.html", incident=item, action=ActionForm())


def _job(public_id: str):
    job = background.get(public_id)
    if job is None:
        abort(404)
    return job


@bp.get("/jobs/<public_id>")
@staff("admin")
def job(public_id: str):
    item = _job(public_id)
    return render_template(
        "admin/job.html", job=item, report=background.report(item), action=ActionForm()
    )


@bp.get("/jobs/<public_id>/progress")
@staff("admin")
def job_progress(public_id: str):
    item = _job(public_id)
    response = make_response(render_template("admin/_job_progress.html", job=item))
    if item.status in ("done", "failed"):
        response.headers["HX-Refresh"] = "true"  # show the full report
    return response


@bp.post("/jobs/<public_id>/confirm")
@staff("admin")
@fresh_within(minutes=5)
def confirm_import(public_id: str):
    item = _job(public_id)
    report = background.report(item)
    if item.kind != "validate_import" or item.status != "done" or report.get("problem_count"):
        flash(_("Only a file that passed validation can be imported."), "error")
        return redirect(url_for("admin.job", public_id=public_id))
    payload = background.payload(item)
    follow = background.submit(
        "import_customers",
        {**payload, "rows": report.get("rows", 0), "actor": _actor()},
        actor=_actor(),
    )
    return redirect(url_for("admin.job", public_id=follow.public_id))


@bp.get("/incidents/<slug>/campaign")
@staff("admin")
def campaign(slug: str):
    item = _incident(slug)
    return render_template(
        "admin/campaign.html",
        incident=item,
        figures=notices_service.campaign(item),
        action=ActionForm(),
    )


@bp.post("/incidents/<slug>/campaign/<act>")
@staff("admin")
@fresh_within(minutes=5)
def campaign_act(slug: str, act: str):
    item = _incident(slug)
    if act == "send":
        figures = notices_service.campaign(item)
        job = background.submit(
            "send_notices",
            {
                "incident_id": item.id,
                "actor": _actor(),
                "total": figures.affected - figures.notified,
            },
            actor=_actor(),
        )
        return redirect(url_for("admin.job", public_id=job.public_id))
    if act == "resend-failed":
        count = notices_service.requeue_failed(item, actor=_actor())
        flash(_("%(count)d failed notice(s) will be tried again.", count=count), "info")
        return redirect(url_for("admin.campaign", slug=slug))
    abort(404)
