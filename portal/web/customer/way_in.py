"""The customer's way in: the notice link or letter code, the one-time code, signing in."""

from __future__ import annotations

import math
from datetime import timedelta

from flask import (
    after_this_request,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, format_timedelta
from flask_babel import gettext as _
from flask_login import current_user

from portal import clock
from portal.extensions import limiter
from portal.services import (
    assisted_sign_in,
    authenticator,
    customers,
    incidents,
    sessions,
    verification,
)
from portal.services.verification import (
    ChallengeEnded,
    CodeRejected,
    LinkInvalid,
    NoContactOnFile,
    ResendLimited,
    TooManyCodes,
    VerificationLocked,
)
from portal.web import limits
from portal.web.access import customer, public
from portal.web.customer.blueprint import bp
from portal.web.customer.common import (
    CHALLENGE_KEY,
    DEFAULT_LANG_KEY,
    LANG_KEY,
    NEXT_KEY,
    SUPPORT_KEY,
    hx_redirect,
    is_htmx,
)
from portal.web.customer.forms import ActionForm, CodeForm, NewLinkForm, ReferenceForm, SignInForm
from portal.web.navigation import safe_next


@bp.app_context_processor
def _helpline():
    """`helpline()` for the "ask a person" panel: looked up only on pages that show it."""

    def helpline(announced=None):
        return incidents.support_line(session.get(SUPPORT_KEY), announced)

    return {"helpline": helpline}


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
    try:
        if request.method == "POST":  # CSRFProtect has already checked the token
            return _begin(verification.start_from_link(token, chosen=session.get(LANG_KEY)))
        landing = verification.open_link(token)
    except LinkInvalid as exc:
        return render_template(
            "customer/link_invalid.html", reason=exc.reason, form=NewLinkForm()
        ), 410 if exc.reason == "expired" else 404
    except NoContactOnFile:
        return render_template("customer/locked.html", no_contact=True)
    except VerificationLocked:
        return _locked()
    except TooManyCodes:
        return render_template("customer/too_many_codes.html"), 429
    # GET shows the page and spends nothing: mail scanners open links before people do.
    # In the customer's language unless they picked another on the page.
    language_ = session.get(LANG_KEY) or verification.language_of(landing.notice.customer)
    with force_locale(language_):
        return render_template("customer/link.html", landing=landing)


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
            return _begin(
                verification.start_from_reference(form.reference.data, chosen=session.get(LANG_KEY))
            )
        except CodeRejected as exc:
            form.reference.errors.append(str(exc))
        except NoContactOnFile:
            return render_template("customer/locked.html", no_contact=True)
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
            return hx_redirect(url_for("customer.locked"))
        except ChallengeEnded as exc:
            form.code.errors.append(str(exc))
            ended, status = True, 422
        except CodeRejected as exc:
            form.code.errors.append(str(exc))
            status = 422
        else:
            # A code from the notice (link or letter), not a step-up of a signed-in customer.
            from_notice = challenge.purpose == "verify" and challenge.notice_id is not None
            return hx_redirect(
                _signed_in(challenge.customer, challenge.consumed_at, from_notice=from_notice)
            )
    elif request.method == "POST":
        status = 422
    template = "customer/_code_form.html" if is_htmx() else "customer/verify.html"
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


def _signed_in(customer_, verified_at, *, from_notice: bool = False) -> str:
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
    # A browser new to this customer is told to them (the service says when it is not).
    browser_token = sessions.recognise_browser(
        customer_,
        request.cookies.get(browser_cookie_name()),
        from_notice=from_notice,
        user_agent=request.user_agent.string,
    )

    @after_this_request
    def _keep_browser_id(response):
        # Long-lived, HttpOnly, and only a marker (it opens nothing): Lax so that it arrives
        # with the notice link's page too. __Host- in production: no sibling site can plant it.
        response.set_cookie(
            browser_cookie_name(),
            browser_token,
            max_age=int(sessions.BROWSER_TTL.total_seconds()),
            httponly=True,
            secure=current_app.config["PORTAL_ENV"] == "production",
            samesite="Lax",
            path="/",
        )
        return response

    return target


def browser_cookie_name() -> str:
    """The cookie that lets us know a browser again (see sessions.recognise_browser)."""
    return (
        "__Host-portal_browser"
        if current_app.config["PORTAL_ENV"] == "production"
        else "portal_browser"
    )


@bp.post("/verify/again")
@public
@limiter.limit(limits.RESEND_PER_CHALLENGE, key_func=limits.challenge)
@limiter.limit(limits.RESEND_PER_NETWORK, key_func=limits.network)
def start_again():
    """A new code for this browser after its code ran out: no need to find the notice again."""
    try:
        return _begin(
            verification.start_again(session.get(CHALLENGE_KEY), chosen=session.get(LANG_KEY))
        )
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
        challenge = verification.resend_code(
            session.get(CHALLENGE_KEY), channel, chosen=session.get(LANG_KEY)
        )
        if channel:
            message = _(
                "We sent the same code again, %(channel)s. It may take a minute to arrive.",
                channel=verification.describe_channel(challenge.customer, challenge.channel),
            )
    except VerificationLocked:
        return hx_redirect(url_for("customer.locked"))
    except (ResendLimited, ChallengeEnded) as exc:
        message, ok = str(exc), False
    if is_htmx():
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
        except authenticator.SignInWaiting as exc:
            # Only someone who typed the right code sees this (a stranger's wrong codes get the
            # answer an unknown address gets), so it may say that the link still works.
            seconds = max(1, math.ceil((exc.until - clock.now()).total_seconds()))
            wait = format_timedelta(timedelta(seconds=seconds), threshold=1.1)
            form.code.errors.append(
                _(
                    "Signing in with your app is paused for a while because of wrong codes. "
                    "Try it again in about %(wait)s, or use the link in your notice now: "
                    "it keeps working.",
                    wait=wait,
                )
            )
            page = render_template("customer/signin.html", form=form)
            return page, 429, {"Retry-After": str(seconds)}
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


@bp.route("/assisted/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.ASSISTED_PER_LINK, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.ASSISTED_PER_NETWORK, key_func=limits.network, methods=["POST"])
def assisted(token: str):
    """The one-time sign-in link an agent sent; GET only shows a button (scanners open links)."""
    try:
        if request.method == "POST":
            customer_ = assisted_sign_in.use_link(token)
            return redirect(_signed_in(customer_, clock.now()))
        assisted_sign_in.check_link(token)
    except assisted_sign_in.LinkUnusable as exc:
        return render_template(
            "customer/link_invalid.html", reason="tampered", form=NewLinkForm(), message=str(exc)
        ), 404
    return render_template("customer/assisted.html", form=ActionForm())
