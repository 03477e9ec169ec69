"""Updates about an incident: communications drafts, legal approves exactly that text, then it
is published (and sent); a correction is drafted by an admin and approved the same way."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Incident, IncidentUpdate
from portal.services import approvals, background, updates
from portal.web.access import staff
from portal.web.admin.approvals import approval_state
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import UpdateForm, translations_from
from portal.web.staff.forms import ActionForm


@bp.get("/incidents/<slug>/updates")
@staff("admin", "communications", "legal")
def incident_updates(slug: str):
    item = incident_or_404(slug)
    shown = updates.for_incident(item)
    states = {
        u.id: approval_state(updates.subject_of(u), str(u.id), updates.pinned(u))
        for u in shown
        if u.published_at is None
    }
    people = approvals.staff_by_id(
        s["approved"].approved_by_id for s in states.values() if s["approved"]
    )
    return render_template(
        "admin/updates.html",
        incident=item,
        updates=shown,
        states=states,
        people=people,
        update_form=UpdateForm(),
        action=ActionForm(),
    )


def _back(slug: str):
    return redirect(url_for("admin.incident_updates", slug=slug) + "#updates")


def _write_from_form(write, item, *, saved: str, incomplete: str) -> None:
    """Check the update form and hand its words to `write` (draft, edit or correct, on `item`);
    flash how it went. The three forms differ only in what they write."""
    form = UpdateForm()
    if not form.validate_on_submit():
        flash(incomplete, "error")
        return
    try:
        write(
            item,
            form.title.data,
            form.body.data,
            actor=current_actor(),
            translations=translations_from(form, IncidentUpdate.translated_fields),
        )
    except updates.UpdateError as exc:
        flash(str(exc), "error")
    else:
        flash(saved, "info")


@bp.post("/incidents/<slug>/updates")
@staff("communications")  # communications writes the updates; legal approves them
def new_update(slug: str):
    _write_from_form(
        updates.draft,
        incident_or_404(slug),
        saved=_("Draft saved. Check it below, then ask legal to approve it."),
        incomplete=_("An update needs a title and a text."),
    )
    return _back(slug)


def _update(update_id: int):
    update = updates.get(update_id)
    if update is None:
        abort(404)
    return update


@bp.post("/updates/<int:update_id>/edit")
@staff("communications", "admin")  # the drafter: communications an update, admin a correction
def edit_update(update_id: int):
    from flask_login import current_user

    update = _update(update_id)
    if not approvals.may_draft(current_user.staff, updates.subject_of(update)):
        flash(_("Your roles do not let you change this draft."), "error")
    else:
        _write_from_form(
            updates.edit_draft,
            update,
            saved=_("Draft changed. It needs legal's approval again."),
            incomplete=_("An update needs a title and a text."),
        )
    return _back(update_slug(update))


@bp.post("/updates/<int:update_id>/publish")
# Whoever runs the release may press publish; only legal's approval of this exact text (or an
# override by two admins) lets it out, checked by the service.
@staff("communications", "admin")
def publish_update(update_id: int):
    update = _update(update_id)
    try:
        updates.publish(update, actor=current_actor())
    except updates.UpdateError as exc:
        flash(str(exc), "error")
    else:
        if request.form.get("notify") == "yes":
            job = background.submit(
                "notify_update", {"update_id": update.id}, actor=current_actor()
            )
            return redirect(url_for("admin.job", public_id=job.public_id))
        flash(_("Published."), "info")
    return _back(update_slug(update))


@bp.post("/updates/<int:update_id>/correct")
@staff("admin")  # an admin drafts a correction; legal approves it like an update
def correct_update(update_id: int):
    update = _update(update_id)
    _write_from_form(
        updates.correct,
        update,
        saved=_("Correction saved as a draft. Ask legal to approve it."),
        incomplete=_("A correction needs a title and a text."),
    )
    return _back(update_slug(update))


def update_slug(update) -> str:
    return db.session.get(Incident, update.incident_id).slug
