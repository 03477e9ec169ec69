"""Admin: the incident's identity-protection offer (product, deadline, who qualifies, where)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _

from portal.services import protection
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor, incident_or_404
from portal.web.admin.forms import ProtectionOfferForm, translation_data

FIELDS = (
    "provider_name",
    "product_name",
    "includes",
    "term_months",
    "enroll_by",
    "enroll_url",
    "enroll_phone",
    "terms_url",
    "eligible_classes",
    "regions",
    "minors_product",
)


@bp.route("/incidents/<slug>/protection", methods=["GET", "POST"])
@staff("admin")
def protection_offer(slug: str):
    item = incident_or_404(slug)
    offer = protection.offer_for(item.id)
    form = ProtectionOfferForm(obj=offer, data=translation_data(offer) if offer else None)
    status = 200
    if form.validate_on_submit():
        fields = {name: getattr(form, name).data or "" for name in FIELDS}
        fields["term_months"] = form.term_months.data
        fields["enroll_by"] = form.enroll_by.data
        fields["translations"] = {"es": {"includes": form.includes_es.data or ""}}
        try:
            protection.save_offer(item, actor=current_actor(), **fields)
        except protection.ProtectionError as exc:
            flash(str(exc), "error")
            status = 422
        else:
            flash(_("Saved."), "info")
            return redirect(url_for("admin.protection_offer", slug=slug))
    elif form.is_submitted():
        status = 422
    return render_template(
        "admin/protection_offer.html", incident=item, offer=offer, form=form
    ), status
