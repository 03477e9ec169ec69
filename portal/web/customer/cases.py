"""Asking for help: a signed-in customer's cases, and a request from someone not signed in."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal.extensions import limiter
from portal.services import cases
from portal.validation import without_invisible
from portal.web import limits
from portal.web.access import customer, public
from portal.web.customer.blueprint import bp
from portal.web.customer.forms import CaseForm, HelpForm, ReplyForm


@bp.route("/me/cases", methods=["GET", "POST"])
@customer
@limiter.limit(limits.QUESTION_PER_CUSTOMER, key_func=limits.customer, methods=["POST"])
def my_cases():
    customer_ = current_user.customer
    form = CaseForm()
    if form.validate_on_submit():
        try:
            case = cases.open_case(
                customer_,
                form.topic.data,
                form.body.data,
                callback_phone=form.callback_phone.data or "",
                callback_window=form.callback_window.data or "",
            )
        except cases.CaseError as exc:
            getattr(form, exc.field or "body").errors.append(str(exc))
        else:
            flash(_("Thank you. We will answer here, and email you when we do."), "info")
            return redirect(url_for("customer.my_case", public_id=case.public_id))
    return render_template(
        "customer/cases.html",
        cases=cases.customer_cases(customer_),
        form=form,
        topics=cases.TOPIC_LABELS,
    ), (422 if request.method == "POST" else 200)


@bp.route("/me/cases/<public_id>", methods=["GET", "POST"])
@customer
@limiter.limit(limits.REPLY_PER_CUSTOMER, key_func=limits.customer, methods=["POST"])
def my_case(public_id: str):
    customer_ = current_user.customer
    case = cases.customer_case(customer_, public_id)
    if case is None:
        abort(404)  # only their own cases exist for them
    form = ReplyForm()
    if form.validate_on_submit():
        cases.customer_reply(customer_, case, form.body.data)
        return redirect(url_for("customer.my_case", public_id=public_id))
    return render_template(
        "customer/case.html",
        case=case,
        form=form,
        thread=cases.thread(case, for_staff=False),
        topics=cases.TOPIC_LABELS,
    )


@bp.route("/help", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.HELP_PER_CONTACT_AND_NETWORK,
    key_func=limits.and_network(limits.help_contact),
    methods=["POST"],
)
@limiter.limit(limits.HELP_PER_CONTACT, key_func=limits.help_contact, methods=["POST"])
@limiter.limit(limits.HELP_PER_NETWORK, key_func=limits.network, methods=["POST"])
def help_request():
    form = HelpForm()
    if request.method == "GET" and request.args.get("reason") == "contact":
        # From the code page: the phone or email on file is out of date.
        form.body.data = _(
            "My phone number or email address has changed, so your code does not reach me."
        )
    if form.validate_on_submit():
        try:
            cases.help_request(
                name=form.name.data,
                contact=form.contact.data,
                reference=form.reference.data or "",
                body=form.body.data,
                topic=form.topic.data,
                callback_phone=form.callback_phone.data or "",
                callback_window=form.callback_window.data or "",
                locale=str(get_locale()),
            )
        except cases.CaseError as exc:
            getattr(form, exc.field or "contact").errors.append(str(exc))
            # Shown back without what the person cannot see (and was refused): sending the form
            # again then works, instead of failing the same way until the rate limit stops them.
            form.name.data = without_invisible(form.name.data or "")
        else:
            # The same answer whether or not we know this person.
            return redirect(url_for("customer.help_sent"))
    return render_template("customer/help.html", form=form), (
        422 if request.method == "POST" else 200
    )


@bp.get("/help/sent")
@public
def help_sent():
    return render_template("customer/help_sent.html")


@bp.route("/help/case/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.HELP_REPLY_PER_LINK, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.HELP_REPLY_PER_NETWORK, key_func=limits.network, methods=["POST"])
def help_case(token: str):
    """The answer to a request from someone not signed in, through the link we sent them: that
    one conversation, and a way to write back. Reading spends nothing."""
    form = ReplyForm()
    try:
        if form.validate_on_submit():
            cases.help_case_reply(token, form.body.data)
            flash(_("Thank you. We will answer you the same way."), "info")
            return redirect(url_for("customer.help_case", token=token))
        case = cases.help_case(token)
    except cases.HelpLinkInvalid as exc:
        status = 410 if isinstance(exc, cases.HelpLinkExpired) else 404
        return render_template("customer/help_case.html", error=str(exc)), status
    return render_template(
        "customer/help_case.html",
        case=case,
        form=form,
        thread=cases.thread(case, for_staff=False),
        topics=cases.TOPIC_LABELS,
    ), (422 if request.method == "POST" else 200)
