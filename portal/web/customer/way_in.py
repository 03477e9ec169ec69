"""The customer's way in: the notice link or letter code, the one-time code, the dashboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock
from portal.extensions import limiter
from portal.services import (
    authenticator,
    cases,
    customers,
    dashboard,
    incidents,
    passwords,
    sessions,
    verification,
)
from portal.services import plan as plan_service
from portal.services import protection as protection_service
from portal.services.verification import (
    ChallengeEnded,
    CodeRejected,
    LinkInvalid,
    ResendLimited,
    TooManyCodes,
    VerificationLocked,
)
from portal.web import limits
from portal.web.access import customer, public
from portal.web.customer.forms import (
    ActionForm,
    CaseForm,
    CodeForm,
    EnrollForm,
    HelpForm,
    NewLinkForm,
    PasswordForm,
    ReferenceForm,
    ReplyForm,
    SignInForm,
)
from portal.web.navigation import safe_next

bp = Blueprint("customer", __name__)

CHALLENGE_KEY = "challenge"  # the pending challenge this browser may answer
NEXT_KEY = "next"  # where to return after a step-up
SUPPORT_KEY = "notice"  # the notice whose incident's helpline a stuck person is shown
LANG_KEY = "lang"  # the language the person picked with the switch (a choice, kept at sign-in)
DEFAULT_LANG_KEY = "lang_default"  # the language of their notice or record (not a choice)


@bp.app_context_processor
def _helpline():
    """`helpline()` for the "ask a person" panel: looked up only on pages that show it."""

    def helpline():
        return incidents.support_line(session.get(SUPPORT_KEY))

    return {"helpline": helpline}


def _is_htmx() -> bool:
    return "HX-Request" in request.headers and "HX-History-Restore-Request" not in request.headers


def _begin(challenge) -> object:
    """Bind this browser to a new challenge and go to the code page (in their language)."""
    session[CHALLENGE_KEY] = challenge.public_id
    if challenge.notice_id is not None:  # whose helpline to show if this person gets stuck
        session[SUPPORT_KEY] = challenge.notice_id
    session.setdefault(DEFAULT_LANG_KEY, verification.language_of(challenge.customer))
    return redirect(url_for("customer.verify"))


def _locked():
    return redirect(url_for("customer.locked"))


@bp.route("/a/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.LINK_PER_NOTICE, key_func=limits.notice, methods=["POST"])
@limiter.limit(limits.LINK_PER_NETWORK, key_func=limits.network, methods=["POST"])
def link(token: str):
    form = ActionForm()
    try:
        if request.method == "POST":  # CSRFProtect has already checked the token
            return _begin(verification.start_from_link(token))
        landing = verification.open_link(token)
    except LinkInvalid as exc:
        return render_template(
            "customer/link_invalid.html", reason=exc.reason, form=NewLinkForm()
        ), 410 if exc.reason == "expired" else 404
    except VerificationLocked:
        return _locked()
    except TooManyCodes:
        return render_template("customer/too_many_codes.html"), 429
    # GET shows the page and spends nothing: mail scanners open links before people do.
    # In the customer's language unless they picked another on the page.
    language_ = session.get(LANG_KEY) or verification.language_of(landing.notice.customer)
    with force_locale(language_):
        return render_template("customer/link.html", landing=landing, form=form)


@bp.route("/start", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.START_PER_REFERENCE_AND_NETWORK,
    key_func=limits.and_network(limits.reference),
    methods=["POST"],
)
@limiter.limit(limits.START_PER_REFERENCE, key_func=limits.reference, methods=["POST"])
@limiter.limit(limits.START_PER_NETWORK, key_func=limits.network, methods=["POST"])
def start():
    form = ReferenceForm()
    if form.validate_on_submit():
        try:
            return _begin(verification.start_from_reference(form.reference.data))
        except CodeRejected as exc:
            form.reference.errors.append(str(exc))
        except VerificationLocked:
            return _locked()
        except TooManyCodes:
            return render_template("customer/too_many_codes.html"), 429
    return render_template("customer/start.html", form=form)


@bp.route("/verify", methods=["GET", "POST"])
@public
@limiter.limit(limits.VERIFY_PER_CHALLENGE, key_func=limits.challenge, methods=["POST"])
@limiter.limit(limits.VERIFY_PER_NETWORK, key_func=limits.network, methods=["POST"])
def verify():
    if CHALLENGE_KEY not in session:
        return redirect(url_for("public.index"))
    form = CodeForm()
    status, ended = 200, False
    if form.validate_on_submit():
        try:
            challenge = verification.verify_code(session.get(CHALLENGE_KEY), form.code.data)
        except VerificationLocked:
            session.pop(CHALLENGE_KEY, None)
            return _hx_redirect(url_for("customer.locked"))
        except ChallengeEnded as exc:
            form.code.errors.append(str(exc))
            ended, status = True, 422
        except CodeRejected as exc:
            form.code.errors.append(str(exc))
            status = 422
        else:
            return _hx_redirect(_signed_in(challenge.customer, challenge.consumed_at))
    elif request.method == "POST":
        status = 422
    template = "customer/_code_form.html" if _is_htmx() else "customer/verify.html"
    response = make_response(
        render_template(
            template,
            form=form,
            resend=ActionForm(),
            ended=ended,
            delivery=verification.delivery(session.get(CHALLENGE_KEY)),
        ),
        status,
    )
    response.vary.add("HX-Request")
    return response


def _signed_in(customer_, verified_at) -> str:
    """Open a fresh session for a customer who just proved themselves; return where to go."""
    target = safe_next(session.get(NEXT_KEY)) or url_for("customer.me")
    chosen = session.get(LANG_KEY)
    sessions.end_session(session.get("sid"))  # a step-up replaces the session it came from
    # A new session id on every sign-in: anything planted in the old cookie is discarded.
    session.clear()
    # Only now, with the person proven, may a language picked before signing in become theirs
    # (a stranger holding a letter could otherwise change what someone's messages say).
    if chosen in current_app.config["LANGUAGES"]:
        customers.choose_language(customer_, chosen)
        session[LANG_KEY] = chosen
    else:
        session[DEFAULT_LANG_KEY] = verification.language_of(customer_)
    session["sid"] = sessions.open_session(
        customer_, verified_at=verified_at, user_agent=request.user_agent.string
    )
    return target


def _hx_redirect(url: str):
    if _is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


@bp.post("/verify/again")
@public
@limiter.limit(limits.RESEND_PER_CHALLENGE, key_func=limits.challenge)
@limiter.limit(limits.RESEND_PER_NETWORK, key_func=limits.network)
def start_again():
    """A new code for this browser after its code ran out: no need to find the notice again."""
    try:
        return _begin(verification.start_again(session.get(CHALLENGE_KEY)))
    except VerificationLocked:
        return _locked()
    except TooManyCodes:
        return render_template("customer/too_many_codes.html"), 429
    except ChallengeEnded:
        return redirect(url_for("public.index"))


@bp.post("/verify/resend")
@public
@limiter.limit(limits.RESEND_PER_CHALLENGE, key_func=limits.challenge)
@limiter.limit(limits.RESEND_PER_NETWORK, key_func=limits.network)
def resend():
    channel = request.form.get("channel") or None  # the other contact on file, if asked
    message, ok = _("We sent the same code again. It may take a minute to arrive."), True
    try:
        challenge = verification.resend_code(session.get(CHALLENGE_KEY), channel)
        if channel:
            message = _(
                "We sent the same code again, %(channel)s. It may take a minute to arrive.",
                channel=verification.describe_channel(challenge.customer, challenge.channel),
            )
    except VerificationLocked:
        return _hx_redirect(url_for("customer.locked"))
    except (ResendLimited, ChallengeEnded) as exc:
        message, ok = str(exc), False
    if _is_htmx():
        response = make_response(
            render_template("customer/_resend_status.html", message=message, ok=ok)
        )
        response.vary.add("HX-Request")
        return response
    flash(message, "info" if ok else "error")
    return redirect(url_for("customer.verify"))


@bp.route("/link/new", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.NEW_LINK_PER_EMAIL_AND_NETWORK,
    key_func=limits.and_network(limits.email),
    methods=["POST"],
)
@limiter.limit(limits.NEW_LINK_PER_EMAIL, key_func=limits.email, methods=["POST"])
@limiter.limit(limits.NEW_LINK_PER_NETWORK, key_func=limits.network, methods=["POST"])
def new_link():
    form = NewLinkForm()
    if form.validate_on_submit():
        verification.request_new_link(form.email.data)
        # The same answer whether or not we know the address: it must reveal nothing.
        return redirect(url_for("customer.new_link_sent"))
    return render_template("customer/new_link.html", form=form), (
        422 if request.method == "POST" else 200
    )


@bp.get("/link/sent")
@public
def new_link_sent():
    return render_template("customer/new_link_sent.html")


@bp.get("/locked")
@public
def locked():
    return render_template("customer/locked.html")


@bp.get("/signed-out")
@public
def signed_out():
    chosen = request.args.get("lang", "")
    if chosen not in current_app.config["LANGUAGES"]:
        return render_template("customer/signed_out.html")
    with force_locale(chosen):
        return render_template("customer/signed_out.html")


@bp.get("/me")
@customer
def me():
    customer_ = current_user.customer
    return render_template("customer/dashboard.html", views=dashboard.for_customer(customer_))


@bp.post("/logout")
@customer
def logout():
    sessions.end_session(session.get("sid"))
    session.clear()
    # The goodbye is in their language: the session (and with it the choice) is gone, and
    # Clear-Site-Data drops the cookies, so the language rides in the address.
    response = redirect(url_for("customer.signed_out", lang=_language()))
    # Tell the browser to drop what it kept of the signed-in pages.
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


def _fresh() -> bool:
    return current_user.is_fresh()


@bp.post("/me/confirm")
@customer
@limiter.limit(limits.CONFIRM_PER_CUSTOMER, key_func=limits.customer)
def confirm():
    """Send a fresh code before a sensitive act; come back to it afterwards."""
    try:
        challenge = verification.start_step_up(current_user.customer)
    except VerificationLocked:
        return _locked()
    except TooManyCodes:
        return render_template("customer/too_many_codes.html"), 429
    target = safe_next(request.form.get("next"))
    response = _begin(challenge)
    if target:
        session[NEXT_KEY] = target
    return response


@bp.get("/me/authenticator")
@customer
def authenticator_page():
    customer_ = current_user.customer
    return render_template(
        "customer/authenticator.html",
        enabled=authenticator.is_enabled(customer_),
        enabled_at=customer_.totp_enabled_at,
        enrollment=authenticator.pending(customer_) if _fresh() else None,
        fresh=_fresh(),
        form=CodeForm(),
        action=ActionForm(),
    )


@bp.post("/me/authenticator/setup")
@customer
def authenticator_setup():
    if not _fresh():  # adding a way in needs a fresh proof, not just an open session
        return redirect(url_for("customer.authenticator_page"))
    authenticator.begin(current_user.customer)
    return redirect(url_for("customer.authenticator_page"))


@bp.post("/me/authenticator/confirm")
@customer
@limiter.limit(limits.AUTHENTICATOR_PER_CUSTOMER, key_func=limits.customer)
def authenticator_confirm():
    form = CodeForm()
    customer_ = current_user.customer
    if not _fresh():
        return redirect(url_for("customer.authenticator_page"))
    if form.validate_on_submit():
        try:
            authenticator.confirm(customer_, form.code.data)
        except CodeRejected as exc:
            form.code.errors.append(str(exc))
        else:
            flash(
                _(
                    "Your authenticator app is set up. Next time, sign in with your email "
                    "and a code from the app."
                ),
                "info",
            )
            return redirect(url_for("customer.authenticator_page"))
    return render_template(
        "customer/authenticator.html",
        enabled=False,
        enabled_at=None,
        enrollment=authenticator.pending(customer_),
        fresh=True,
        form=form,
        action=ActionForm(),
    ), 422


@bp.post("/me/authenticator/remove")
@customer
def authenticator_remove():
    if not _fresh():
        return redirect(url_for("customer.authenticator_page"))
    authenticator.remove(current_user.customer)
    flash(_("The authenticator app was removed."), "info")
    return redirect(url_for("customer.authenticator_page"))


@bp.route("/signin", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.SIGNIN_PER_EMAIL_AND_NETWORK, key_func=limits.and_network(limits.email), methods=["POST"]
)
@limiter.limit(limits.SIGNIN_PER_EMAIL, key_func=limits.email, methods=["POST"])
@limiter.limit(limits.SIGNIN_PER_NETWORK, key_func=limits.network, methods=["POST"])
def signin():
    form = SignInForm()
    if form.validate_on_submit():
        try:
            customer_ = authenticator.sign_in(form.email.data, form.code.data)
        except VerificationLocked:
            return _locked()
        except authenticator.SignInFailed:
            form.code.errors.append(
                _(
                    "That email address and code do not match. Check the "
                    "code in your app and try again."
                )
            )
        else:
            return redirect(_signed_in(customer_, clock.now()))
    status = 422 if request.method == "POST" else 200
    return render_template("customer/signin.html", form=form), status


@bp.post("/language")
@public
def language():
    """Switch the pages' language; a signed-in customer keeps it for their pages and messages."""
    chosen = request.form.get("lang", "")
    if chosen in current_app.config["LANGUAGES"]:
        session[LANG_KEY] = chosen
        # Public, so that the switch works before signing in; a live session makes it theirs.
        login_session = sessions.load_session(session.get("sid"))
        if login_session is not None:
            customers.choose_language(login_session.customer, chosen)
    return redirect(safe_next(request.form.get("next")) or url_for("public.index"))


@bp.app_template_global()
def language_return_path() -> str:
    """Where the language switch brings the person back: this page, query string and all."""
    if request.method in ("GET", "HEAD"):
        return request.full_path if request.query_string else request.path
    # A page shown in answer to a form: its address, when it can be opened again ...
    rule = request.url_rule
    if rule is not None and "GET" in (rule.methods or ()):
        return request.path
    # ... else the page the form was on (the language view still checks it is ours).
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path:
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return url_for("public.index")


def _language() -> str:
    return str(get_locale())


@bp.get("/me/plan")
@customer
def plan():
    customer_ = current_user.customer
    plan_service.viewed(customer_)
    return render_template(
        "customer/plan.html",
        plan=plan_service.for_customer(customer_, _language()),
        action=ActionForm(),
    )


@bp.post("/me/plan/<step_id>")
@customer
def toggle_step(step_id: str):
    customer_ = current_user.customer
    try:
        updated = plan_service.toggle(customer_, step_id, _language())
    except plan_service.StepNotInPlan:
        abort(404)  # not a step of this customer's plan
    if _is_htmx():
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


@bp.route("/me/password", methods=["GET", "POST"])
@customer
@limiter.limit(limits.PASSWORD_PER_CUSTOMER, key_func=limits.customer, methods=["POST"])
def password():
    form = PasswordForm()
    if not _fresh():
        # Changing the password needs a code from the last few minutes, not just a session.
        return render_template("customer/password.html", form=None, action=ActionForm())
    if form.validate_on_submit():
        try:
            session["sid"] = passwords.change_password(
                current_user.customer,
                form.password.data,
                form.confirm.data,
                keep_token=session.get("sid"),
            )
        except passwords.PasswordRejected as exc:
            form.password.errors.append(str(exc))
        else:
            flash(
                _(
                    "Your password has been changed. Every other place you were signed in "
                    "has been signed out."
                ),
                "info",
            )
            return redirect(url_for("customer.me"))
    status = 422 if request.method == "POST" else 200
    return render_template("customer/password.html", form=form, action=ActionForm()), status


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


@bp.route("/assisted/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.ASSISTED_PER_LINK, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.ASSISTED_PER_NETWORK, key_func=limits.network, methods=["POST"])
def assisted(token: str):
    """The one-time sign-in link an agent sent; GET only shows a button (scanners open links)."""
    try:
        if request.method == "POST":
            customer_ = cases.use_assisted_link(token)
            return redirect(_signed_in(customer_, clock.now()))
        cases.check_assisted_link(token)
    except cases.CaseError as exc:
        return render_template(
            "customer/link_invalid.html", reason="tampered", form=NewLinkForm(), message=str(exc)
        ), 404
    return render_template("customer/assisted.html", form=ActionForm())
