"""Where the customer is signed in: every live session, and a way to end the others."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from portal.services import sessions
from portal.web.access import customer
from portal.web.customer.blueprint import bp
from portal.web.customer.forms import ActionForm
from portal.web.devices import device_label


def _page(status: int = 200):
    current_id = current_user.session.id
    live = sessions.live_sessions(current_user.customer)
    return render_template(
        "customer/sessions.html",
        rows=sorted(live, key=lambda row: row.id != current_id),  # this browser first
        current_id=current_id,
        device=device_label,
        fresh=current_user.is_fresh(),
        action=ActionForm(),
    ), status


@bp.get("/me/sessions")
@customer
def where_signed_in():
    return _page()


def _needs_proof():
    """Ending sessions needs a code from the last few minutes: someone holding a stolen session
    must not be able to throw the real customer out. Nothing is ended until then."""
    if current_user.is_fresh():
        return None
    flash(_("Confirm it is you first: we will send you a new code."), "info")
    return redirect(url_for("customer.where_signed_in"))


@bp.post("/me/sessions/<int:session_id>/end")
@customer
def end_session_elsewhere(session_id: int):
    waiting = _needs_proof()
    if waiting is not None:
        return waiting
    if sessions.end_one(current_user.customer, session_id, current=current_user.session):
        flash(_("Signed out there. That browser must use a new link or code to come back."), "info")
    else:
        # The same answer for an id that is not theirs as for one that ended: it tells nothing.
        flash(_("That place was already signed out."), "info")
    return redirect(url_for("customer.where_signed_in"))


@bp.post("/me/sessions/end-others")
@customer
def end_other_sessions():
    waiting = _needs_proof()
    if waiting is not None:
        return waiting
    ended = sessions.end_others(current_user.customer, current=current_user.session)
    flash(
        ngettext(
            "Signed out of %(num)d other place. Only this browser is signed in now.",
            "Signed out of %(num)d other places. Only this browser is signed in now.",
            ended,
        ),
        "info",
    )
    return redirect(url_for("customer.where_signed_in"))
