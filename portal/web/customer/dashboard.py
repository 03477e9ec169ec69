"""The customer's dashboard and their personal plan of steps."""

from __future__ import annotations

from flask import abort, make_response, redirect, render_template, url_for
from flask_login import current_user

from portal.services import dashboard
from portal.services import plan as plan_service
from portal.web import page_cache
from portal.web.access import customer
from portal.web.customer.blueprint import bp
from portal.web.customer.common import is_htmx, page_language
from portal.web.customer.forms import ActionForm


@bp.get("/me")
@customer
def me():
    customer_ = current_user.customer
    return render_template("customer/dashboard.html", views=dashboard.for_customer(customer_))


@bp.app_template_global()
def incident_part(template: str, view: dashboard.IncidentView, **flags):
    """An incident's own section of the dashboard (its text, remediation actions, updates): the
    same for every reader with the incident in this language, so taken from the page cache
    (portal/web/page_cache.py). The key holds the incident's whole row, so an edit to it is a
    new key in every process at once; `flags` are the reader's choices the part depends on
    (booleans, e.g. whether their state's notice leaves a section out)."""
    key = (view.incident.id, view.content, *sorted(flags.items()))
    return page_cache.shared_part(template, key, lambda: {"view": view, **flags})


@bp.get("/me/plan")
@customer
def plan():
    customer_ = current_user.customer
    plan_service.viewed(customer_)
    return render_template(
        "customer/plan.html",
        plan=plan_service.for_customer(customer_, page_language()),
        action=ActionForm(),
    )


@bp.app_template_global()
def plan_steps(items: list[plan_service.PlanItem]):
    """The steps of the plan as the plan page shows them: each the same for everyone with the
    step in the same state, so rendered once per language and state (portal/web/page_cache.py)."""
    return page_cache.fragments_of(
        "customer/_plan_step.html", [((item.step, item.done), {"item": item}) for item in items]
    )


@bp.post("/me/plan/<step_id>")
@customer
def toggle_step(step_id: str):
    customer_ = current_user.customer
    try:
        updated = plan_service.toggle(customer_, step_id, page_language())
    except plan_service.StepNotInPlan:
        abort(404)  # not a step of this customer's plan
    if is_htmx():
        response = make_response(
            render_template(
                "customer/_plan_step.html",
                item=updated.item(step_id),
                plan=updated,
                action=ActionForm(),
                oob=True,
            )
        )
        response.vary.add("HX-Request")
        return response
    return redirect(url_for("customer.plan") + f"#step-{step_id}")
