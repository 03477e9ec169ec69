"""Staff: sign-in with two factors, the case queue, a case, finding a customer, the tools."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from portal.extensions import limiter
from portal.models.audit import staff_actor
from portal.models.case import MessageKind
from portal.services import (
    agent_tools,
    cases,
    contact_changes,
    customers,
    dashboard,
    incidents,
    letters,
    security_keys,
    sessions,
    support_desk,
)
from portal.services import staff as staff_service
from portal.web import freshness, limits
from portal.web import input as request_input
from portal.web.access import public, staff, staff_pending
from portal.web.devices import device_label
from portal.web.freshness import fresh_within
from portal.web.identity import (
    staff_cookie_attributes,
    staff_cookie_name,
    staff_device_cookie_name,
)
from portal.web.navigation import safe_next
from portal.web.staff.forms import (
    ActionForm,
    CodeForm,
    KeyForm,
    LinkForm,
    LoginForm,
    MessageForm,
    OpenCaseForm,
    ReauthForm,
    SearchForm,
    SecurityKeyForm,
    SetupForm,
    StatusForm,
    ToolForm,
)

bp = Blueprint("staff", __name__, url_prefix="/staff")

AGENTS = ("agent", "admin")
# The oldest a case filter may ask for: ten years, longer than any case can have waited.
MAX_AGE_HOURS = 24 * 365 * 10


def _with_cookie(response, token: str):
    """The staff session cookie: separate from the customer's, and Strict (staff never arrive
    from another site's link already signed in)."""
    response.set_cookie(staff_cookie_name(), token, **staff_cookie_attributes())
    return response


def _device() -> str | None:
    return request.cookies.get(staff_device_cookie_name())


def _with_device(response, member):
    """A full sign-in marks this browser as the member's own for 180 days: a stranger's wrong
    passwords lock new browsers, never this one (AUTH-07, OWASP's device cookie)."""
    response.set_cookie(
        staff_device_cookie_name(),
        staff_service.device_token(member),
        max_age=int(staff_service.DEVICE_TTL.total_seconds()),
        **staff_cookie_attributes(),
    )
    return response


def _known_device_for_typed_address() -> bool:
    # A browser with this member's device cookie is not held to the per-account limit either,
    # or a stranger's 30 tries in 15 minutes would shut the member out just the same.
    if not _device():
        return False
    member = staff_service.by_email(request.form.get("email", ""))
    return staff_service.known_device(member, _device()) is not None


def _member():
    return current_user.staff


@bp.context_processor
def _contact_change_helpers():
    """How the contact-change table reads a change (masked, in words)."""
    return {
        "change_masked": contact_changes.masked,
        "change_state": contact_changes.state,
        "change_open": contact_changes.is_open,
        "change_due": contact_changes.due_at,
    }


# --- set-up from an invitation ---


@bp.route("/setup/<token>", methods=["GET", "POST"])
@public
@limiter.limit(limits.STAFF_SETUP_PER_INVITATION, key_func=limits.link_token, methods=["POST"])
@limiter.limit(limits.STAFF_SETUP_PER_NETWORK, key_func=limits.network, methods=["POST"])
def setup(token: str):
    try:
        member = staff_service.invitation(token)  # a GET spends nothing
    except staff_service.StaffError as exc:
        return render_template("staff/message.html", title=_("Invitation"), message=str(exc)), 404
    form = SetupForm()
    if form.validate_on_submit():
        try:
            session_token = staff_service.accept_invitation(
                token, form.password.data, form.confirm.data, user_agent=request.user_agent.string
            )
        except (staff_service.StaffError, staff_service.passwords.PasswordRejected) as exc:
            form.password.errors.append(str(exc))
        else:
            return _with_cookie(redirect(url_for("staff.setup_authenticator")), session_token)
    return render_template("staff/setup.html", form=form, email=member.email)


@bp.route("/setup-authenticator", methods=["GET", "POST"])
@staff_pending
def setup_authenticator():
    member = _member()
    if member.totp_enabled_at is not None:
        return redirect(url_for("staff.code"))
    form = CodeForm()
    # Setting up there are no recovery codes yet: the label names only the app.
    form.code.label.text = _("Code from your authenticator app")
    if form.validate_on_submit():
        try:
            codes = staff_service.confirm_authenticator(current_user.session, form.code.data)
        except staff_service.StaffError as exc:
            form.code.errors.append(str(exc))
        else:
            # Shown once, on this response only; only their digests are stored.
            token = staff_service.rotate(current_user.session)
            return _with_cookie(
                make_response(render_template("staff/recovery_codes.html", codes=codes)), token
            )
    return render_template(
        "staff/setup_authenticator.html",
        form=form,
        enrollment=staff_service.authenticator_enrollment(member),
    )


# --- signing in ---


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.STAFF_LOGIN_PER_ACCOUNT,
    key_func=limits.staff_email,
    methods=["POST"],
    exempt_when=_known_device_for_typed_address,
)
@limiter.limit(limits.STAFF_LOGIN_PER_NETWORK, key_func=limits.network, methods=["POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        try:
            token = staff_service.sign_in(
                form.email.data,
                form.password.data,
                user_agent=request.user_agent.string,
                device=_device(),
            )
        except staff_service.SignInFailed:
            form.password.errors.append(_("That email and password do not match."))
        else:
            return _with_cookie(redirect(url_for("staff.code")), token)
    status = 422 if request.method == "POST" else 200
    return render_template("staff/login.html", form=form), status


@bp.route("/code", methods=["GET", "POST"])
@staff_pending
@limiter.limit(limits.STAFF_CODE_PER_ACCOUNT, key_func=limits.staff_member, methods=["POST"])
@limiter.limit(limits.STAFF_CODE_PER_NETWORK, key_func=limits.network, methods=["POST"])
def code():
    if current_user.is_authenticated:
        return redirect(url_for("staff.queue"))
    session_ = current_user.session
    form, key_form = CodeForm(), KeyForm()
    # The page has two forms: the key's answer (sent by the page's script) or a typed code.
    if "key_answer" in request.form:
        form = CodeForm(formdata=None)
        if key_form.validate_on_submit():
            try:
                token = staff_service.second_factor_key(
                    session_,
                    key_form.key_answer.data,
                    user_agent=request.user_agent.string,
                    device=_device(),
                )
            except staff_service.SignInFailed:
                key_form.key_answer.errors.append(
                    _("That security key was not accepted. Try again, or use another key.")
                )
            else:
                return _with_device(
                    _with_cookie(redirect(url_for("staff.queue")), token), session_.staff
                )
    elif form.validate_on_submit():
        try:
            token = staff_service.second_factor(
                session_, form.code.data, user_agent=request.user_agent.string, device=_device()
            )
        except staff_service.KeyRequired as exc:
            form.code.errors.append(str(exc))
        except staff_service.SignInFailed:
            form.code.errors.append(_("That code does not match."))
        else:
            return _with_device(
                _with_cookie(redirect(url_for("staff.queue")), token), session_.staff
            )
    status = 422 if request.method == "POST" else 200
    return render_template(
        "staff/code.html",
        form=form,
        key_form=key_form,
        key_options=security_keys.sign_options(session_),
        codes_allowed=not staff_service.codes_refused(session_.staff),
    ), status


@bp.route("/reauth", methods=["GET", "POST"])
@staff(*AGENTS)
@limits.reauthentication()
def reauth():
    """Password and code again. A kept act is finished by its own route (the page posts there);
    this one returns to a page or export asked for with a stale proof, or to target."""
    form = ReauthForm()
    target = safe_next(request.values.get("next")) or url_for("staff.queue")
    if form.validate_on_submit() and freshness.prove(form):
        flash(_("Confirmed: for five minutes you will not be asked again."), "info")
        return redirect(target)
    # A refused proof is a 422, like a refused sign-in (and like a kept act's own page).
    return freshness.ask(form, target, 422 if request.method == "POST" else 200)


@bp.post("/logout")
@staff_pending
def logout():
    staff_service.sign_out(current_user.session)
    freshness.forget()
    response = redirect(url_for("staff.login"))
    # Deleted with the attributes it was set with: without Secure a browser keeps a __Host- one.
    response.delete_cookie(staff_cookie_name(), **staff_cookie_attributes())
    session.clear()  # the Flask session (CSRF secret, kept proofs) ends with the sign-in
    # Not "cookies": that would also wipe the device cookie, and the member's own browser would
    # then fall under a stranger's lock on the account again (AUTH-07). The staff cookie is
    # deleted above and its session revoked server-side; cache and storage are cleared.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


# --- a member's own sessions ---


@bp.get("/sessions")
@staff(*AGENTS)
def own_sessions():
    return render_template(
        "staff/sessions.html",
        rows=staff_service.live_sessions(_member()),
        current_id=current_user.session.id,
        device=device_label,
        fresh=current_user.is_fresh(),
        action=ActionForm(),
    )


@bp.post("/sessions/<int:session_id>/end")
@staff(*AGENTS)
# A stolen staff session must not be able to throw the real member out: password and code first.
@fresh_within(minutes=5)
def end_own_session(session_id: int):
    if staff_service.end_other_sessions(current_user.session, session_id=session_id):
        flash(_("That session has ended."), "info")
    else:
        flash(_("That session had already ended."), "info")
    return redirect(url_for("staff.own_sessions"))


@bp.post("/sessions/end-others")
@staff(*AGENTS)
@fresh_within(minutes=5)
def end_own_other_sessions():
    ended = staff_service.end_other_sessions(current_user.session)
    flash(ngettext("%(num)d other session ended.", "%(num)d other sessions ended.", ended), "info")
    return redirect(url_for("staff.own_sessions"))


# --- security keys ---


@bp.get("/security-keys")
@staff(*AGENTS)
def security_key_list():
    """The member's security keys: add one, or remove one."""
    member = _member()
    return render_template(
        "staff/security_keys.html",
        keys=security_keys.of(member),
        action=ActionForm(),
        needs_key=staff_service.needs_security_key(member),
        key_required=staff_service.key_required(member),
    )


@bp.route("/security-keys/new", methods=["GET", "POST"])
@staff(*AGENTS)
# A new factor is as strong as the proof behind it: a stolen session must not add its own key.
@fresh_within(minutes=5)
def security_key_new():
    form = SecurityKeyForm()
    if form.validate_on_submit():
        try:
            staff_service.add_security_key(
                current_user.session, form.name.data, form.key_answer.data
            )
        except staff_service.StaffError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(_("Your security key was added."), "info")
            return redirect(url_for("staff.security_key_list"))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "staff/security_key_new.html",
        form=form,
        options=security_keys.register_options(current_user.session),
    ), status


@bp.post("/security-keys/<public_id>/remove")
@staff(*AGENTS)
@fresh_within(minutes=5)
def security_key_remove(public_id: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        staff_service.remove_security_key(_member(), public_id)
    except staff_service.StaffError as exc:
        flash(str(exc), "error")
    else:
        flash(_("The security key was removed."), "info")
    return redirect(url_for("staff.security_key_list"))


# --- the queue and a case ---


@bp.get("/cases")
@staff(*AGENTS)
def queue():
    args = request.args
    try:
        page = int(args.get("page", "1"))
    except ValueError:
        page = 1  # a page link, not something a person types: the first page will do
    status = 200
    try:
        # Bounded: a larger age reaches back past any date there is (that was a 500).
        older = request_input.whole_number(args.get("older_than_hours"), low=0, high=MAX_AGE_HOURS)
    except ValueError:
        # Filtering on an age that is not one would show the wrong cases: say so, show none.
        flash(_("Give the age in whole hours, from 0 to %(most)d.", most=MAX_AGE_HOURS), "error")
        result, status = support_desk.Queue([], 1, 1, 0), 400
    else:
        result = support_desk.queue(
            _member(),
            status=args.get("status", ""),
            topic=args.get("topic", ""),
            assignee=args.get("assignee", ""),
            older_than_hours=older or None,
            page=page,
        )
    template = (
        "staff/_queue_table.html"
        if "HX-Request" in request.headers and "HX-History-Restore-Request" not in request.headers
        else "staff/queue.html"
    )
    response = make_response(
        render_template(
            template,
            queue=result,
            args=args,
            overdue=support_desk.is_overdue,
            topics=cases.TOPIC_LABELS,
            statuses=cases.STATUS_LABELS,
            max_age_hours=MAX_AGE_HOURS,
        ),
        status,
    )
    response.vary.add("HX-Request")
    return response


def _case(public_id: str):
    try:
        return support_desk.staff_case(_member(), public_id)
    except support_desk.Forbidden:
        abort(403)
    except cases.CaseError:
        abort(404)


@bp.get("/cases/<public_id>")
@staff(*AGENTS)
def case(public_id: str):
    item = _case(public_id)
    views = dashboard.for_customer(item.customer) if item.customer else []
    return render_template(
        "staff/case.html",
        case=item,
        thread=cases.thread(item, for_staff=True),
        contact=cases.contact_of(item),
        callback=cases.callback_of(item),
        search_form=SearchForm(case=item.public_id),
        views=views,
        overdue=support_desk.is_overdue(item),
        topics=cases.TOPIC_LABELS,
        statuses=cases.STATUS_LABELS,
        message_form=MessageForm(),
        action=ActionForm(),
        status_form=StatusForm(status=item.status),
        tool_form=ToolForm(),
        fresh=current_user.is_fresh(),
        changes=contact_changes.for_customer(item.customer) if item.customer else [],
    )


@bp.post("/cases/<public_id>/claim")
@staff(*AGENTS)
def claim(public_id: str):
    support_desk.claim(_member(), _case(public_id))
    return redirect(url_for("staff.case", public_id=public_id))


@bp.post("/cases/<public_id>/messages")
@staff(*AGENTS)
def message(public_id: str):
    item = _case(public_id)
    form = MessageForm()
    if form.validate_on_submit():
        try:
            if request.form.get("kind") == MessageKind.NOTE:
                support_desk.note(_member(), item, form.body.data)
            else:
                support_desk.reply(_member(), item, form.body.data)
        except cases.CaseError as exc:
            flash(str(exc), "error")
    else:
        flash(_("Write a message first."), "error")
    return redirect(url_for("staff.case", public_id=public_id))


@bp.post("/cases/<public_id>/status")
@staff(*AGENTS)
def status(public_id: str):
    item = _case(public_id)
    form = StatusForm()
    if form.validate_on_submit():
        support_desk.set_status(_member(), item, form.status.data)
    return redirect(url_for("staff.case", public_id=public_id))


TOOLS = {
    "resend-link": agent_tools.resend_link,
    "clear-lock": agent_tools.clear_lock,
    "confirm-identity": agent_tools.confirm_identity,
    "correct-contact": agent_tools.correct_contact,
}


def _run_tool(tool: str, subject, back: str):
    """One tool on a customer, reached from a case or from their record: a reason, then the act
    (the service records it). Its routes need a fresh proof of who the agent is."""
    form = ToolForm()
    if not form.validate_on_submit():
        flash(_("Give the reason for this action (it is recorded)."), "error")
        return redirect(back)
    contact = {"email": form.email.data or "", "phone": form.phone.data or ""}
    try:
        TOOLS[tool](
            _member(), subject, form.reason.data, **(contact if tool == "correct-contact" else {})
        )
    except cases.CaseError as exc:
        flash(str(exc), "error")
    else:
        if tool == "correct-contact":
            flash(
                _(
                    "Asked, and recorded. The new address was sent a code to confirm it; the "
                    "address on file was told. The change is made once a second staff member "
                    "approves it, or after the waiting time."
                ),
                "info",
            )
        else:
            flash(_("Done, and recorded."), "info")
    return redirect(back)


@bp.post("/cases/<public_id>/tools/<tool>")
@staff(*AGENTS)
@fresh_within(minutes=5)
def tool(public_id: str, tool: str):
    if tool not in TOOLS:
        abort(404)  # before the case is read: a look at a case is recorded, a typo need not be
    item = _case(public_id)
    return _run_tool(tool, item, url_for("staff.case", public_id=public_id))


@bp.post("/cases/<public_id>/link")
@staff(*AGENTS)
@fresh_within(minutes=5)
def link(public_id: str):
    """Make an unverified request the customer's, after an identity check."""
    item = _case(public_id)
    back = url_for("staff.case", public_id=public_id)
    form = LinkForm()
    if not form.validate_on_submit():
        flash(_("Give the reason for this action (it is recorded)."), "error")
        return redirect(back)
    found = customers.by_public_id(form.customer.data)
    if found is None:
        abort(404)
    try:
        support_desk.link_case(
            _member(),
            item,
            found,
            form.reason.data,
            identity_checked=form.identity_checked.data,
        )
    except cases.CaseError as exc:
        flash(str(exc), "error")
    else:
        flash(_("The case is now the customer's, and that is recorded."), "info")
    return redirect(back)


# --- finding a customer, and their record ---


# Per staff member (agents at one desk share an address, not an allowance): it stops a stolen
# session from sweeping the list by script; each search is also in the audit trail.
@bp.route("/customers", methods=["GET", "POST"])
@staff(*AGENTS)
@limiter.limit(limits.STAFF_SEARCH_PER_MEMBER, key_func=limits.staff_member, methods=["POST"])
def find_customer():
    """Exact look-up by email, phone, reference code or full name.

    A POST, answered in place: what the caller told the agent never lands in a URL (browser
    history, proxy and access logs).
    """
    form = SearchForm(case=request.args.get("case", ""))
    results = None
    if form.validate_on_submit():
        try:
            results = customers.search(_member(), form.kind.data, form.query.data)
        except customers.SearchError as exc:
            form.query.errors.append(str(exc))
    # Linking an unverified request: only to a case this agent may work, and still unlinked.
    linking = _case(form.case.data) if form.case.data else None
    if linking is not None and linking.customer_id is not None:
        linking = None
    status = 422 if request.method == "POST" and results is None else 200
    return render_template(
        "staff/customers.html",
        form=form,
        results=results,
        masked=customers.masked,
        linking=linking,
        link_form=LinkForm(),
        fresh=current_user.is_fresh(),
    ), status


def _customer(public_id: str):
    found = customers.staff_customer(_member(), public_id)
    if found is None:
        abort(404)
    return found


@bp.get("/customers/<public_id>")
@staff(*AGENTS)
def customer_record(public_id: str):
    found = _customer(public_id)
    return render_template(
        "staff/customer.html",
        customer=found,
        contact=customers.masked(found),
        postal_address=letters.mask_address(found),
        views=dashboard.for_customer(found),
        cases=support_desk.cases_for_staff(_member(), found),
        overdue=support_desk.is_overdue,
        topics=cases.TOPIC_LABELS,
        statuses=cases.STATUS_LABELS,
        case_form=OpenCaseForm(),
        tool_form=ToolForm(),
        fresh=current_user.is_fresh(),
        changes=contact_changes.for_customer(found),
        # Only admins end a customer's sessions; only they are shown how many are live.
        live_sessions=(
            len(sessions.live_sessions(found)) if current_user.has_role("admin") else None
        ),
    )


@bp.post("/customers/<public_id>/end-sessions")
@staff("admin")
# A fresh proof, like every admin act on accounts; the reason is recorded with the act.
@fresh_within(minutes=5)
def end_customer_sessions(public_id: str):
    found = customers.by_public_id(public_id)
    if found is None:
        abort(404)
    form = ToolForm()
    if not form.validate_on_submit():
        flash(_("Give the reason for this action (it is recorded)."), "error")
    else:
        ended = sessions.end_customer_sessions(
            found, actor=staff_actor(_member()), reason=form.reason.data
        )
        flash(
            ngettext(
                "%(num)d session ended. They must use a new link or code to come back.",
                "%(num)d sessions ended. They must use a new link or code to come back.",
                ended,
            ),
            "info",
        )
    return redirect(url_for("staff.customer_record", public_id=public_id))


@bp.post("/customers/<public_id>/letters/<slug>")
@staff(*AGENTS)
def request_letter(public_id: str, slug: str):
    """An agent's mark: this person gets a printed letter about this incident."""
    try:  # the form's CSRF token is checked by CSRFProtect, as for every POST
        incident = incidents.get_by_slug(slug)
    except incidents.IncidentError:
        abort(404)  # before the look at the record is written: a refusal writes nothing
    found = _customer(public_id)
    try:
        marked = letters.request_letter(incident, found, actor=staff_actor(_member()))
    except letters.LetterError as error:
        flash(str(error), "error")
    else:
        flash(
            _("A printed letter will go to this person.")
            if marked
            else _("A letter for this incident is already recorded."),
            "info",
        )
    return redirect(url_for("staff.customer_record", public_id=public_id))


@bp.post("/customers/<public_id>/cases")
@staff(*AGENTS)
def open_case_for(public_id: str):
    """Open a case on the customer's behalf (they called, or wrote from somewhere else)."""
    found = _customer(public_id)
    form = OpenCaseForm()
    if form.validate_on_submit():
        try:
            item = support_desk.open_case_for(_member(), found, form.topic.data, form.body.data)
        except cases.CaseError as exc:
            flash(str(exc), "error")
        else:
            return redirect(url_for("staff.case", public_id=item.public_id))
    else:
        flash(_("Choose a topic and write a note first."), "error")
    return redirect(url_for("staff.customer_record", public_id=public_id))


# From a customer's record, only the tools that reach the contacts already on file. Changing
# where messages go is done on a case the agent works, where the thread shows why: a contact
# change followed by a sign-in link would otherwise hand one agent the account.
RECORD_TOOLS = ("resend-link", "clear-lock", "confirm-identity")


@bp.post("/customers/<public_id>/tools/<tool>")
@staff(*AGENTS)
@fresh_within(minutes=5)
def customer_tool(public_id: str, tool: str):
    if tool not in RECORD_TOOLS:
        abort(404)
    found = customers.by_public_id(public_id)
    if found is None:
        abort(404)
    return _run_tool(tool, found, url_for("staff.customer_record", public_id=public_id))


# --- contact changes held for a second staff member ---


@bp.get("/contact-changes")
@staff(*AGENTS)
def contact_changes_waiting():
    """Every contact change still waiting: what a second staff member is asked to look at."""
    return render_template(
        "staff/contact_changes.html", changes=contact_changes.waiting(), tool_form=ToolForm()
    )


def _change_action(public_id: str, act):
    change = contact_changes.by_public_id(public_id)
    if change is None:
        abort(404)
    back = safe_next(request.form.get("next")) or url_for("staff.contact_changes_waiting")
    form = ToolForm()
    if not form.validate_on_submit():
        flash(_("Give the reason for this action (it is recorded)."), "error")
        return redirect(back)
    try:
        act(_member(), change, form.reason.data)
    except cases.CaseError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Done, and recorded."), "info")
    return redirect(back)


# Approving hands where sign-in links go to the new address: a fresh proof, like the tools.
@bp.post("/contact-changes/<public_id>/approve")
@staff(*AGENTS)
@fresh_within(minutes=5)
def contact_change_approve(public_id: str):
    return _change_action(public_id, contact_changes.approve)


@bp.post("/contact-changes/<public_id>/cancel")
@staff(*AGENTS)
def contact_change_cancel(public_id: str):
    return _change_action(public_id, contact_changes.cancel_by_staff)
