"""A contact change staff asked for: the new address confirms it, the old one can stop it."""

from __future__ import annotations

from flask import render_template, request

from portal.extensions import limiter
from portal.services import contact_changes
from portal.web import limits
from portal.web.access import public
from portal.web.customer.blueprint import bp
from portal.web.customer.forms import ActionForm, CodeForm


def _unusable(exc: Exception):
    return render_template("customer/contact_change.html", step="unusable", message=str(exc)), 404


@bp.route("/contact/confirm/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.CONTACT_CHANGE_PER_LINK, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.CONTACT_CHANGE_PER_NETWORK, key_func=limits.network, methods=["POST"])
def contact_confirm(token: str):
    """The new address enters the code it was sent; a GET only shows the form (scanners)."""
    form = CodeForm()
    try:
        contact_changes.check_confirm_link(token)
        if form.validate_on_submit():
            try:
                change = contact_changes.confirm(token, form.code.data)
            except contact_changes.ChangeLinkUnusable:
                raise
            except contact_changes.ContactChangeError as exc:
                form.code.errors.append(str(exc))
            else:
                return render_template(
                    "customer/contact_change.html",
                    step="confirmed",
                    applied=change.applied_at is not None,
                    hours=int(contact_changes.hold().total_seconds() // 3600),
                )
    except contact_changes.ChangeLinkUnusable as exc:
        return _unusable(exc)
    status = 422 if request.method == "POST" else 200
    return render_template("customer/contact_change.html", step="confirm", form=form), status


@bp.route("/contact/not-me/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.CONTACT_CHANGE_PER_LINK, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.CONTACT_CHANGE_PER_NETWORK, key_func=limits.network, methods=["POST"])
def contact_not_me(token: str):
    """ "This was not me": a GET shows a button (mail scanners open links); the POST stops the
    change and escalates the case."""
    form = ActionForm()
    try:
        contact_changes.check_cancel_link(token)
        if form.validate_on_submit():
            change = contact_changes.cancel_by_customer(token)
            return render_template(
                "customer/contact_change.html",
                step="stopped",
                too_late=change.applied_at is not None,
            )
    except contact_changes.ChangeLinkUnusable as exc:
        return _unusable(exc)
    return render_template("customer/contact_change.html", step="not_me", form=form)
