"""The customer's way in: the notice link or letter code, the one-time code, the dashboard."""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from portal.extensions import limiter
from portal.services import dashboard, reference_codes, sessions, verification
from portal.services.verification import (
    ChallengeEnded,
    CodeRejected,
    LinkInvalid,
    ResendLimited,
    TooManyCodes,
    VerificationLocked,
)
from portal.web.access import customer, public
from portal.web.customer.forms import ActionForm, CodeForm, NewLinkForm, ReferenceForm

bp = Blueprint("customer", __name__)

CHALLENGE_KEY = "challenge"  # the pending challenge this browser may answer


def _is_htmx() -> bool:
    return "HX-Request" in request.headers and "HX-History-Restore-Request" not in request.headers


def _reference_key() -> str:
    return "ref:" + reference_codes.normalise(request.form.get("reference", ""))[:16]


def _begin(challenge) -> object:
    """Bind this browser to a new challenge and go to the code page."""
    session[CHALLENGE_KEY] = challenge.public_id
    return redirect(url_for("customer.verify"))


def _locked():
    return redirect(url_for("customer.locked"))


@bp.route("/a/<token>", methods=["GET", "POST"])
@public
@limiter.limit("20 per hour", methods=["POST"])
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
    return render_template("customer/link.html", landing=landing, form=form)


@bp.route("/start", methods=["GET", "POST"])
@public
@limiter.limit("10 per minute;60 per hour", methods=["POST"])
@limiter.limit("5 per 15 minutes", methods=["POST"], key_func=_reference_key)
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
@limiter.limit("30 per 15 minutes", methods=["POST"])
def verify():
    if CHALLENGE_KEY not in session:
        return redirect(url_for("public.index"))
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        try:
            challenge = verification.verify_code(session.get(CHALLENGE_KEY), form.code.data)
        except VerificationLocked:
            session.pop(CHALLENGE_KEY, None)
            return _hx_redirect(url_for("customer.locked"))
        except ChallengeEnded as exc:
            form.code.errors.append(str(exc))
            status = 422
        except CodeRejected as exc:
            form.code.errors.append(str(exc))
            status = 422
        else:
            # A new session id on sign-in: anything planted in the old cookie is discarded.
            session.clear()
            session["sid"] = sessions.open_session(
                challenge.customer,
                verified_at=challenge.consumed_at,
                user_agent=request.user_agent.string,
            )
            return _hx_redirect(url_for("customer.me"))
    elif request.method == "POST":
        status = 422
    template = "customer/_code_form.html" if _is_htmx() else "customer/verify.html"
    response = make_response(render_template(template, form=form, resend=ActionForm()), status)
    response.vary.add("HX-Request")
    return response


def _hx_redirect(url: str):
    if _is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


@bp.post("/verify/resend")
@public
@limiter.limit("10 per 15 minutes")
def resend():
    message, ok = _("We sent the same code again. It may take a minute to arrive."), True
    try:
        verification.resend_code(session.get(CHALLENGE_KEY))
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
@limiter.limit("10 per hour", methods=["POST"])
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
    return render_template("customer/signed_out.html")


@bp.get("/me")
@customer
def me():
    customer_ = g.login_session.customer
    return render_template(
        "customer/dashboard.html", views=dashboard.for_customer(customer_), logout=ActionForm()
    )


@bp.post("/logout")
@customer
def logout():
    sessions.end_session(session.get("sid"))
    session.clear()
    response = redirect(url_for("customer.signed_out"))
    # Tell the browser to drop what it kept of the signed-in pages.
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response
