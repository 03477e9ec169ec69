"""Admin: the incidents, their list (the console) and each one's notice text."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.models import Incident
from portal.services import incidents, obligations, playbook, updates
from portal.services import notices as notices_service
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import (
    ROLE_LABELS,
    IncidentForm,
    NewIncidentForm,
    UpdateForm,
    translation_data,
    translations_from,
)
from portal.web.staff.forms import ActionForm


@bp.get("/")
@staff("admin")
def console():
    items = incidents.all_incidents()
    return render_template(
        "admin/console.html",
        incidents=items,
        attention=obligations.attention(items),
        overdue_tasks=playbook.overdue(items),
        role_labels=ROLE_LABELS,
    )


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
                actor=current_actor(),
            )
        except incidents.IncidentError as exc:
            form.slug.errors.append(str(exc))
        else:
            return redirect(url_for("admin.incident", slug=item.slug))
    return render_template("admin/new_incident.html", form=form)


@bp.route("/incidents/<slug>", methods=["GET", "POST"])
@staff("admin")
def incident(slug: str):
    item = incident_or_404(slug)
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
                incidents.update_incident(
                    item, actor=current_actor(), translations=translations, **fields
                )
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
