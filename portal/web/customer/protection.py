"""Identity-theft protection: the offers for the customer's incidents, and enrolling."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.extensions import limiter
from portal.services import protection as protection_service
from portal.web import limits
from portal.web.access import customer
from portal.web.customer.blueprint import bp
from portal.web.customer.forms import EnrollForm


@bp.get("/me/protection")
@customer
def protection():
    customer_ = current_user.customer
    return render_template(
        "customer/protection.html",
        views=protection_service.offers_for(customer_),
        form=EnrollForm(),
    )


@bp.post("/me/protection/<int:offer_id>")
@customer
@limiter.limit(limits.ENROLL_PER_CUSTOMER, key_func=limits.customer)
def enroll(offer_id: int):
    customer_ = current_user.customer
    offer = protection_service.offer_for_customer(offer_id, customer_)
    if offer is None:
        abort(404)  # not an offer of this customer's incidents
    form = EnrollForm()
    status = 200
    if form.validate_on_submit():
        try:
            protection_service.enroll(offer, customer_)
        except (protection_service.EnrollmentClosed, protection_service.NotEligible) as exc:
            flash(str(exc), "error")
            status = 403
        else:
            return redirect(url_for("customer.protection") + f"#offer-{offer_id}")
    else:
        status = 422
    return render_template(
        "customer/protection.html", views=protection_service.offers_for(customer_), form=form
    ), status
