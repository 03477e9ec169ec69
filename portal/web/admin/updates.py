"""Admin: updates about an incident, drafted, published (and sent) and corrected."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _

from portal.extensions import db
from portal.models import Incident, IncidentUpdate
from portal.services import background, updates
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import UpdateForm, translations_from


@bp.post("/incidents/<slug>/updates")
@staff("admin")
def new_update(slug: str):
    item = incident_or_404(slug)
    form = UpdateForm()
    if form.validate_on_submit():
        try:
            updates.draft(
                item,
                form.title.data,
                form.body.data,
                actor=current_actor(),
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
        updates.publish(update, actor=current_actor())
    except updates.UpdateError as exc:
        flash(str(exc), "error")
    else:
        if request.form.get("notify") == "yes":
            job = background.submit(
                "notify_update", {"update_id": update.id}, actor=current_actor()
            )
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
                actor=current_actor(),
                translations=translations_from(form, IncidentUpdate.translated_fields),
            )
        except updates.UpdateError as exc:
            flash(str(exc), "error")
    else:
        flash(_("A correction needs a title and a text."), "error")
    return redirect(url_for("admin.incident", slug=update_slug(update)) + "#updates")


def update_slug(update) -> str:
    return db.session.get(Incident, update.incident_id).slug
