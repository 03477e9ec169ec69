"""Admin: the notice campaign of an incident: preview what each group of readers gets, send
the notices after confirming the counts, resend failed ones."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.extensions import limiter
from portal.services import approvals, notice_preview
from portal.services import notices as notices_service
from portal.web import limits
from portal.web.access import staff
from portal.web.admin.approvals import approval_state
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


@bp.get("/incidents/<slug>/campaign")
@staff("admin", "legal")  # legal reviews what it approves; only admins send
def campaign(slug: str):
    item = incident_or_404(slug)
    return render_template(
        "admin/campaign.html",
        incident=item,
        figures=notices_service.campaign(item),
        groups=notice_preview.groups(item),
        action=ActionForm(),
    )


@bp.route("/incidents/<slug>/campaign/preview", methods=["GET", "POST"])
@staff("admin", "legal")  # legal reviews what it approves; only admins send
# By id (a POST, so that nobody's id lands in a URL) it is a look-up of one person: limited
# like the staff's customer search, so a stolen session cannot sweep the list by script.
@limiter.limit(limits.STAFF_SEARCH_PER_MEMBER, key_func=limits.staff_member, methods=["POST"])
def campaign_preview(slug: str):
    item = incident_or_404(slug)
    named = request.method == "POST"
    if named and not ActionForm().validate_on_submit():
        abort(400)
    try:
        reader = notice_preview.sample_reader(
            item,
            locale=request.args.get("locale", ""),
            region=request.args.get("region", ""),
            external_id=request.form.get("external_id", "") if named else "",
        )
    except notice_preview.PreviewError as error:
        flash(str(error), "error")
        return redirect(url_for("admin.campaign", slug=slug))
    shown = notice_preview.preview(item, reader, actor=current_actor(), named=named)
    frame = (
        url_for("admin.campaign_preview_html", slug=slug, reader=shown.reader_public_id)
        if named
        else url_for(
            "admin.campaign_preview_html", slug=slug, locale=shown.locale, region=shown.region
        )
    )
    return render_template(
        "admin/campaign_preview.html", incident=item, preview=shown, frame_url=frame
    )


@bp.get("/incidents/<slug>/campaign/preview/message.html")
@staff("admin", "legal")  # legal reviews what it approves; only admins send
def campaign_preview_html(slug: str):
    """The HTML part alone, for the preview page's frame: shown as a mail client shows it."""
    item = incident_or_404(slug)
    try:
        reader = notice_preview.sample_reader(
            item,
            locale=request.args.get("locale", ""),
            region=request.args.get("region", ""),
            public_id=request.args.get("reader", ""),
        )
    except notice_preview.PreviewError:
        abort(404)
    # The page that frames it recorded the preview already.
    shown = notice_preview.preview(
        item, reader, actor=current_actor(), named=bool(request.args.get("reader")), record=False
    )
    response = make_response(shown.composed.html)
    # The message's own inline styles may apply, and nothing else: no script (a sandbox without
    # allow-scripts), nothing loaded from anywhere, no form sent, framed by our own page only.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
        "sandbox; frame-ancestors 'self'"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/incidents/<slug>/campaign/confirm")
@staff("admin", "legal")  # legal reviews what it approves; only admins send
def campaign_confirm(slug: str):
    item = incident_or_404(slug)
    groups = notice_preview.groups(item)
    return render_template(
        "admin/campaign_confirm.html",
        incident=item,
        approval=approval_state("campaign", item.slug, notice_preview.pinned(item)),
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
        expected = request.form.get("expected", "")
        try:
            job = notices_service.start_campaign(
                item,
                expected=int(expected) if expected.isdecimal() else -1,
                actor=current_actor(),
            )
        except approvals.NotApproved as error:
            flash(str(error), "error")
            return redirect(url_for("admin.campaign_confirm", slug=slug))
        except notices_service.CampaignChanged as error:
            flash(str(error), "error")
            return redirect(url_for("admin.campaign_confirm", slug=slug))
        return redirect(url_for("admin.job", public_id=job.public_id))
    if act == "resend-failed":
        count = notices_service.requeue_failed(item, actor=current_actor())
        flash(_("%(count)d failed notice(s) will be tried again.", count=count), "info")
        return redirect(url_for("admin.campaign", slug=slug))
    abort(404)
