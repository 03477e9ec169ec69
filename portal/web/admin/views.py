"""Admin: the staff and their sessions (each act re-authenticated and audited)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from portal.extensions import db
from portal.models import StaffMember
from portal.services import staff as staff_service
from portal.web.access import staff
from portal.web.staff.forms import ActionForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _target(public_id: str) -> StaffMember:
    member = db.session.scalar(select(StaffMember).where(StaffMember.public_id == public_id))
    if member is None:
        abort(404)
    return member


def _needs_reauth():
    if staff_service.is_fresh(g.staff_session):
        return None
    flash(_("Confirm it is you first: this action needs your password and code again."), "info")
    return redirect(url_for("staff.reauth", next=url_for("admin.staff_list")))


@bp.get("/staff")
@staff("admin")
def staff_list():
    members = staff_service.members()
    return render_template(
        "admin/staff.html",
        members=members,
        action=ActionForm(),
        sessions={m.id: staff_service.live_sessions(m) for m in members},
        when=staff_service.when,
    )


@bp.post("/staff/<public_id>/disable")
@staff("admin")
def disable(public_id: str):
    if (redirect_ := _needs_reauth()) is not None:
        return redirect_
    member = _target(public_id)
    if member.id == g.staff_session.staff_id:
        flash(_("You cannot disable your own account."), "error")
    else:
        staff_service.disable(member, actor=f"staff:{g.staff_session.staff.public_id}")
        flash(_("Disabled; every session of theirs has ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/end-sessions")
@staff("admin")
def end_sessions(public_id: str):
    if (redirect_ := _needs_reauth()) is not None:
        return redirect_
    staff_service.end_sessions(_target(public_id), actor=f"staff:{g.staff_session.staff.public_id}")
    flash(_("Their sessions have ended."), "info")
    return redirect(url_for("admin.staff_list"))


@bp.post("/staff/<public_id>/reset-mfa")
@staff("admin")
def reset_mfa(public_id: str):
    if (redirect_ := _needs_reauth()) is not None:
        return redirect_
    link = staff_service.reset_mfa(
        _target(public_id), actor=f"staff:{g.staff_session.staff.public_id}"
    )
    return render_template("admin/setup_link.html", link=link)
