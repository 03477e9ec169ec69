"""Admin: the notice campaign of an incident: send the notices, resend failed ones."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from portal.services import background
from portal.services import notices as notices_service
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


@bp.get("/incidents/<slug>/campaign")
@staff("admin")
def campaign(slug: str):
    item = incident_or_404(slug)
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
    item = incident_or_404(slug)
    if act == "send":
        figures = notices_service.campaign(item)
        job = background.submit(
            "send_notices",
            {
                "incident_id": item.id,
                "actor": current_actor(),
                "total": figures.affected - figures.notified,
            },
            actor=current_actor(),
        )
        return redirect(url_for("admin.job", public_id=job.public_id))
    if act == "resend-failed":
        count = notices_service.requeue_failed(item, actor=current_actor())
        flash(_("%(count)d failed notice(s) will be tried again.", count=count), "info")
        return redirect(url_for("admin.campaign", slug=slug))
    abort(404)
