"""The response team's approvals: what waits for legal, what was approved by whom and when, and
the emergency override by two admins. What each thing is (a campaign, a letters batch, an update)
is asked for approval from its own page; it is reviewed and decided here."""

from __future__ import annotations

import hmac
import json

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from portal.extensions import db
from portal.models import Approval, Incident
from portal.services import approvals, letters, notice_preview
from portal.services import updates as updates_service
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import incident_or_404
from portal.web.freshness import fresh_within
from portal.web.security import staff_may
from portal.web.staff.forms import ActionForm

# Everyone on the response team may read what was asked and decided (agents work cases only).
TEAM = ("admin", "legal", "communications", "security", "support_lead")


def _approval_or_404(approval_id: int) -> Approval:
    approval = db.session.get(Approval, approval_id)
    if approval is None:
        abort(404)
    return approval


def _where(approval: Approval) -> str | None:
    """The page of the thing approved, when the member's roles open it."""
    incident = db.session.get(Incident, approval.incident_id)
    endpoint, anchor = {
        "campaign": ("admin.campaign_confirm", ""),
        "letters": ("admin.letters", ""),
        "update": ("admin.incident_updates", "#updates"),
        "correction": ("admin.incident_updates", "#updates"),
    }.get(approval.subject, (None, ""))
    if endpoint is None:
        return url_for("admin.approval", approval_id=approval.id)
    if not staff_may(endpoint):
        return None
    return url_for(endpoint, slug=incident.slug) + anchor


@bp.get("/approvals")
@staff(*TEAM)
def approval_list():
    rows = list(db.session.scalars(select(Approval).order_by(Approval.id.desc()).limit(100)))
    return render_template(
        "admin/approvals.html",
        waiting=[a for a in rows if a.state == "pending"],
        decided=[a for a in rows if a.state != "pending"],
        incidents=list(db.session.scalars(select(Incident).order_by(Incident.id.desc()))),
        people=approvals.staff_by_id(
            [a.drafted_by_id for a in rows] + [a.approved_by_id for a in rows]
        ),
        slugs={i.id: i.slug for i in db.session.scalars(select(Incident))},
    )


@bp.get("/approvals/<int:approval_id>")
@staff(*TEAM)
def approval(approval_id: int):
    item = _approval_or_404(approval_id)
    ids = [item.drafted_by_id, item.approved_by_id, *approvals.overriders(item)]
    return render_template(
        "admin/approval.html",
        approval=item,
        pinned=json.loads(item.pinned),
        incident=db.session.get(Incident, item.incident_id),
        people=approvals.staff_by_id(ids),
        overriders=approvals.overriders(item),
        where=_where(item),
        action=ActionForm(),
    )


@bp.post("/approvals/<int:approval_id>/approve")
@staff("legal")  # the route admits legal; the service also refuses the drafter (four eyes)
def approve(approval_id: int):
    from flask_login import current_user

    item = _approval_or_404(approval_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        approvals.approve(item, approver=current_user.staff)
    except approvals.ApprovalError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Approved. It may go out exactly as shown."), "info")
    return redirect(url_for("admin.approval", approval_id=item.id))


@bp.post("/approvals/<int:approval_id>/override")
@staff("admin")
# Going around legal is the most dangerous act here: each of the two admins proves who they
# are again, and both acts are audited and alerted.
@fresh_within(minutes=5)
def override(approval_id: int):
    from flask_login import current_user

    item = _approval_or_404(approval_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        if approvals.overriders(item):
            approvals.confirm_override(item, admin=current_user.staff)
            flash(_("Override confirmed. It may go out; the team has been alerted."), "info")
        else:
            approvals.request_override(
                item, admin=current_user.staff, reason=request.form.get("reason", "")
            )
            flash(_("Override asked for. A second admin must confirm it."), "info")
    except approvals.ApprovalError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.approval", approval_id=item.id))


def _submit(incident, subject: str, ref: str, content: dict):
    from flask_login import current_user

    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        item = approvals.submit(incident, subject, ref, content, drafter=current_user.staff)
    except approvals.ApprovalError as exc:
        flash(str(exc), "error")
        return None
    flash(_("Asked for approval. Legal reviews exactly what is shown here."), "info")
    return item


@bp.post("/incidents/<slug>/campaign/submit")
@staff("admin")
def campaign_submit(slug: str):
    item = incident_or_404(slug)
    content = notice_preview.pinned(item)
    if not content["total"]:
        flash(_("Everyone affected has been notified: there is nothing to send."), "info")
        return redirect(url_for("admin.campaign_confirm", slug=slug))
    asked = _submit(item, "campaign", item.slug, content)
    if asked is None:
        return redirect(url_for("admin.campaign_confirm", slug=slug))
    return redirect(url_for("admin.approval", approval_id=asked.id))


@bp.post("/incidents/<slug>/letters/submit")
@staff("admin")
def letters_submit(slug: str):
    item = incident_or_404(slug)
    content = letters.pinned(item)
    if not content["total"]:
        flash(_("No letters are due."), "info")
        return redirect(url_for("admin.letters", slug=slug))
    asked = _submit(item, "letters", item.slug, content)
    if asked is None:
        return redirect(url_for("admin.letters", slug=slug))
    return redirect(url_for("admin.approval", approval_id=asked.id))


@bp.post("/updates/<int:update_id>/submit")
@staff("communications", "admin")  # communications an update, an admin a correction (service)
def update_submit(update_id: int):
    update = updates_service.get(update_id)
    if update is None:
        abort(404)
    incident = db.session.get(Incident, update.incident_id)
    if update.published_at is None:
        _submit(
            incident,
            updates_service.subject_of(update),
            str(update.id),
            updates_service.pinned(update),
        )
    return redirect(url_for("admin.incident_updates", slug=incident.slug) + "#updates")


def approval_state(subject: str, ref: str, content: dict) -> dict:
    """For a page that shows a thing: is this exact content approved, waiting, or a draft?"""
    covering = approvals.approved_for(subject, ref, content)
    asked = approvals.current(subject, ref)
    waiting = asked if asked and asked.state == "pending" else None
    # A content fingerprint, not a secret; compared in constant time all the same (OPS-02).
    if waiting and not hmac.compare_digest(waiting.pinned_hash, approvals.digest(content)):
        waiting = None  # asked for other content: a change since, so a draft again
    return {"approved": covering, "waiting": waiting}
