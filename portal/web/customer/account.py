"""The customer's account: signing out, an authenticator app, the password, the language."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user

from portal.extensions import limiter
from portal.services import authenticator, customers, passwords, sessions
from portal.services.verification import CodeRejected
from portal.web import limits
from portal.web.access import customer, public
from portal.web.customer.blueprint import bp
from portal.web.customer.common import LANG_KEY, page_language
from portal.web.customer.forms import ActionForm, CodeForm, CurrentAppForm, PasswordForm
from portal.web.navigation import safe_next


@bp.get("/signed-out")
@public
def signed_out():
    chosen = request.args.get("lang", "")
    if chosen not in current_app.config["LANGUAGES"]:
        return render_template("customer/signed_out.html")
    with force_locale(chosen):
        return render_template("customer/signed_out.html")


@bp.post("/logout")
@customer
def logout():
    sessions.end_session(session.get("sid"))
    session.clear()
    # The goodbye is in their language: the session (and with it the choice) is gone, so the
    # language rides in the address.
    response = redirect(url_for("customer.signed_out", lang=page_language()))
    # Tell the browser to drop what it kept of the signed-in pages. Not "cookies": that would
    # also drop the browser's random id, and every sign-in after a sign-out would then be
    # reported as "a new browser" (a warning people learn to ignore). The session cookie is
    # deleted (the emptied session) and its row revoked above; the id opens nothing.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


def _fresh() -> bool:
    return current_user.is_fresh()


def _authenticator_page(status: int = 200, form=None, current_app_form=None):
    customer_ = current_user.customer
    return render_template(
        "customer/authenticator.html",
        enabled=authenticator.is_enabled(customer_),
        enabled_at=customer_.totp_enabled_at,
        enrollment=authenticator.pending(customer_) if _fresh() else None,
        fresh=_fresh(),
        form=form or CodeForm(),
        current_app_form=current_app_form or CurrentAppForm(),
        action=ActionForm(),
        # After changing how they sign in, a customer may want every other browser out too.
        other_places=_other_places() if _fresh() else 0,
    ), status


def _other_places() -> int:
    live = sessions.live_sessions(current_user.customer)
    return sum(1 for row in live if row.id != current_user.session.id)


@bp.get("/me/authenticator")
@customer
def authenticator_page():
    return _authenticator_page()


@bp.post("/me/authenticator/setup")
@customer
# Each try at replacing an app checks a code of it: bounded like confirming one.
@limiter.limit(limits.AUTHENTICATOR_PER_CUSTOMER, key_func=limits.customer)
def authenticator_setup():
    if not _fresh():  # adding a way in needs a fresh proof, not just an open session
        return redirect(url_for("customer.authenticator_page"))
    customer_ = current_user.customer
    if not authenticator.is_enabled(customer_):
        authenticator.begin(customer_)
        return redirect(url_for("customer.authenticator_page"))
    # An app is on: replacing it needs a code from it (the service says why).
    form = CurrentAppForm()
    if form.validate_on_submit():
        try:
            authenticator.begin(customer_, form.current_code.data)
        except CodeRejected as exc:
            form.current_code.errors.append(str(exc))
        else:
            flash(_("Your old authenticator app no longer works. Set up the new one now."), "info")
            return redirect(url_for("customer.authenticator_page"))
    return _authenticator_page(422, current_app_form=form)


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
    return _authenticator_page(422, form=form)


@bp.post("/me/authenticator/remove")
@customer
def authenticator_remove():
    if not _fresh():
        return redirect(url_for("customer.authenticator_page"))
    authenticator.remove(current_user.customer)
    flash(_("The authenticator app was removed."), "info")
    return redirect(url_for("customer.authenticator_page"))


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
