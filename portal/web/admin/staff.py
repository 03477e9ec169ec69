"""Admin: the staff and their sessions (each act re-authenticated and audited)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from portal.extensions import db
from portal.models import StaffMember
from portal.models.staff import STAFF_ROLES
from portal.services import staff as staff_service
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor
from portal.web.admin.forms import EndEverySessionForm
from portal.web.freshness import fresh_within
from portal.web.staff.forms import ActionForm


def _target(public_id: str) -> StaffMember:
    member = db.session.scalar(select(StaffMember).where(StaffMember.public_id == public_id))
    if member is None:
        abort(404)
    return member


def _staff_page(stop_form=None, status: int = 200):
    members = staff_service.members()
    return render_template(
        "admin/staff.html",
        members=members,
        action=ActionForm(),
        sessions={m.id: staff_service.live_sessions(m) for m in members},
        stop_form=stop_form or EndEverySessionForm(),
        phrase=staff_service.EMERGENCY_PHRASE,
        roles=STAFF_ROLES,
    ), status


@bp.get("/staff")
@staff("admin")
def staff_list():
    return _staff_page()


@bp.post("/sessions/end-all")
@staff("admin")
# Re-authenticated like every admin act on accounts: a stolen admin session alone cannot sign
# everyone out (that would be a denial of service on the whole portal).
@fresh_within(minutes=5)
def end_every_session():
    form = EndEverySessionForm()
    typed = (form.phrase.data or "").strip().upper() if form.validate_on_submit() else ""
    if typed != staff_service.EMERGENCY_PHRASE:
        form.phrase.errors.append(
            _(
                "Type %(phrase)s exactly to confirm. Nothing was ended.",
                phrase=staff_service.EMERGENCY_PHRASE,
            )
        )
        return _staff_page(form, 422)
    customers, members = staff_service.end_every_session(current_user.session)
    flash(
        _(
            "Every session has ended except this one: %(customers)s, %(staff)s.",
            customers=ngettext("%(num)d customer session", "%(num)d customer sessions", customers),
            staff=ngettext("%(num)d staff session", "%(num)d staff sessions", members),
        ),
        "info",
    )
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/roles")
@staff("admin")
# Roles open what a member may approve and send: a stolen session alone must not hand them out.
@fresh_within(minutes=5)
def set_roles(public_id: str):
    member = _target(public_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    # One field per role: the portal refuses a field sent twice (portal.web.input).
    chosen = [r for r in STAFF_ROLES if request.form.get(f"role_{r}") == "yes"]
    try:
        staff_service.set_roles(member, chosen, by=current_user.staff, actor=current_actor())
    except staff_service.StaffError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Roles saved."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/disable")
@staff("admin")
@fresh_within(minutes=5)
def disable(public_id: str):
    member = _target(public_id)
    if member.id == current_user.staff.id:
        flash(_("You cannot disable your own account."), "error")
    else:
        staff_service.disable(member, actor=current_actor())
        flash(_("Disabled; every session of theirs has ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/end-sessions")
@staff("admin")
@fresh_within(minutes=5)
def end_sessions(public_id: str):
    staff_service.end_sessions(_target(public_id), actor=current_actor())
    flash(_("Their sessions have ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/reset-mfa")
@staff("admin")
@fresh_within(minutes=5)
def reset_mfa(public_id: str):
    staff_service.reset_mfa(_target(public_id), actor=current_actor())
    # The link itself is never shown here: it went to the member's own address.
    flash(
        _(
            "Their authenticator was reset and their sessions have ended. A set-up link was "
            "sent to the member's own address; it works once, within one hour."
        ),
        "info",
    )
    return redirect(url_for("admin.staff_list"))
