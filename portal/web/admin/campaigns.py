"""Admin: the notice campaign of an incident: preview what each group of readers gets, send
the notices after confirming the counts, resend failed ones."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.services import background, notice_preview
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
        groups=notice_preview.groups(item),
        action=ActionForm(),
    )


def _previewed(item):
    """The preview the query string asks for (a group, or a reader by the organisation's id)."""
    try:
        reader = notice_preview.sample_reader(
            item,
            locale=request.args.get("locale", ""),
            region=request.args.get("region", ""),
            external_id=request.args.get("external_id", ""),
        )
    except notice_preview.PreviewError as error:
        return None, str(error)
    return notice_preview.preview(item, reader, actor=current_actor()), None


@bp.get("/incidents/<slug>/campaign/preview")
@staff("admin")
def campaign_preview(slug: str):
    item = incident_or_404(slug)
    shown, problem = _previewed(item)
    if problem:
        flash(problem, "error")
        return redirect(url_for("admin.campaign", slug=slug))
    return render_template("admin/campaign_preview.html", incident=item, preview=shown)


@bp.get("/incidents/<slug>/campaign/preview/message.html")
@staff("admin")
def campaign_preview_html(slug: str):
    """The HTML part alone, for the preview's frame: shown as a mail client shows it."""
    item = incident_or_404(slug)
    shown, problem = _previewed(item)
    if problem:
        abort(404)
    response = make_response(shown.composed.html)
    # The message's own inline styles may apply, and nothing else: no script (a sandbox without
    # allow-scripts), nothing loaded from anywhere, framed by our own page only.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/incidents/<slug>/campaign/confirm")
@staff("admin")
def campaign_confirm(slug: str):
    item = incident_or_404(slug)
    groups = notice_preview.groups(item)
    return render_template(
        "admin/campaign_confirm.html",
        incident=item,
        groups=[g for g in groups if g.waiting],
        total=sum(g.waiting for g in groups),
        action=ActionForm(),
    )


@bp.post("/incidents/<slug>/campaign/<act>")
@staff("admin")
@fresh_within(minutes=5)
def campaign_act(slug: str, act: str):
    item = incident_or_404(slug)
    if act == "send":
        # The admin confirmed a count per language and region: if an import changed it since,
        # they confirm again rather than send to people they did not see counted.
        expected = request.form.get("expected", "")
        if not expected.isdigit() or int(expected) != notice_preview.waiting_total(item):
            flash(_("The numbers changed since you looked. Check them and confirm again."), "error")
            return redirect(url_for("admin.campaign_confirm", slug=slug))
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
