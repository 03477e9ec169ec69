"""Staff: invitation, two-factor sign-in, lockout, roles, the case desk and the agents' tools."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Case, StaffSession
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import BASE_URL, base_env, customer_row
from tests.customer_flow import csrf_from, link_path, messages_to, sign_in
from tests.staff_flow import (
    PASSWORD,
    code_for,
    confirm_it_is_you,
    log_in,
    member,
    reauth,
    set_up,
)


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, "agent.a@example.com", "agent", clock)
    return client


# --- acceptance 1 ---


def test_invite_setup_sign_in_replay_and_recovery_codes(app, runner, clock):
    result = runner.invoke(
        args=["staff", "invite", "--email", "admin@example.com", "--role", "admin"]
    )
    assert result.exit_code == 0 and f"{BASE_URL}/staff/setup/" in result.output
    link = result.output.strip().splitlines()[-1].removeprefix(BASE_URL)

    first = app.test_client()
    assert first.get(link).status_code == 200
    assert first.get(link).status_code == 200  # looking spends nothing
    page = first.get(link)
    first.post(
        link, data={"csrf_token": csrf_from(page), "password": PASSWORD, "confirm": PASSWORD}
    )
    assert app.test_client().get(link).status_code == 404  # spent on the POST: works once
    page = first.get("/staff/setup-authenticator")
    response = first.post(
        "/staff/setup-authenticator",
        data={"csrf_token": csrf_from(page), "code": code_for("admin@example.com", clock)},
    )
    codes = re.findall(r'<li class="code">([A-Z0-9-]+)</li>', response.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert first.get("/staff/cases").status_code == 200

    later = app.test_client()
    response = log_in(later, "admin@example.com", clock)
    assert response.headers["Location"] == "/staff/cases"
    used = code_for("admin@example.com", clock)
    # The same code again, in another browser: refused, it was used.
    replay = app.test_client()
    page = replay.get("/staff/login")
    replay.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": "admin@example.com", "password": PASSWORD},
    )
    page = replay.get("/staff/code")
    refused = replay.post("/staff/code", data={"csrf_token": csrf_from(page), "code": used})
    assert refused.status_code == 422 and b"does not match" in refused.data
    # A recovery code works once.
    ok = replay.post("/staff/code", data={"csrf_token": csrf_from(page), "code": codes[0]})
    assert ok.headers["Location"] == "/staff/cases"
    again = app.test_client()
    page = again.get("/staff/login")
    again.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": "admin@example.com", "password": PASSWORD},
    )
    page = again.get("/staff/code")
    assert (
        again.post(
            "/staff/code", data={"csrf_token": csrf_from(page), "code": codes[0]}
        ).status_code
        == 422
    )
    notices = [m for m in messages_to("admin@example.com")]
    assert any("recovery code was used" in m.text for m in notices)
    assert all(c not in m.text for m in notices for c in codes)


def _login_answer(app, email: str, password: str):
    client = app.test_client()
    page = client.get("/staff/login")
    response = client.post(
        "/staff/login", data={"csrf_token": csrf_from(page), "email": email, "password": password}
    )
    body = re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))
    body = re.sub(r"nonce=\"[^\"]+\"|reference: [0-9a-f]+|\"X-CSRFToken\": \"[^\"]+\"", "", body)
    return response.status_code, body


def test_ten_wrong_passwords_lock_with_the_same_answer(app, agent, clock):
    wrong = _login_answer(app, "agent.a@example.com", "not the password at all")
    unknown = _login_answer(app, "nobody@example.com", "not the password at all")
    assert wrong == unknown  # known and unknown emails answer alike
    for _ in range(9):
        _login_answer(app, "agent.a@example.com", "still the wrong password")
    assert member("agent.a@example.com").locked_until is not None
    # Locked: even the right password gets the same generic answer.
    assert _login_answer(app, "agent.a@example.com", PASSWORD) == wrong
    clock.tick(31)
    client = app.test_client()
    assert log_in(client, "agent.a@example.com", clock).headers["Location"] == "/staff/cases"


def _code_answer(client, code: str):
    page = client.get("/staff/code")
    return client.post("/staff/code", data={"csrf_token": csrf_from(page), "code": code})


def test_ten_wrong_codes_after_the_right_password_lock_and_tell_the_member(app, agent, clock):
    client = app.test_client()
    page = client.get("/staff/login")
    answer = client.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": "agent.a@example.com", "password": PASSWORD},
    )
    assert answer.headers["Location"] == "/staff/code"
    told_before = len(messages_to("agent.a@example.com"))
    for _ in range(10):
        assert _code_answer(client, "000000").status_code == 422
    assert member("agent.a@example.com").locked_until is not None
    # Locked: the right code is refused too, with the same answer as a wrong one.
    right = _code_answer(client, code_for("agent.a@example.com", clock))
    assert right.status_code == 422
    assert b"/staff/cases" not in right.headers.get("Location", "").encode()
    # The owner hears of each right password with a wrong code, and no code is in the message.
    notices = [m.text for m in messages_to("agent.a@example.com")][told_before:]
    assert notices and all("right password but" in text for text in notices)
    # What it asks the member to do is something they can do: staff have no password page.
    assert all("tell an admin" in text and "change your password" not in text for text in notices)
    assert all("000000" not in text and PASSWORD not in text for text in notices)


def test_a_replayed_staff_code_is_recorded_and_the_member_is_told(app, agent, clock):
    client = app.test_client()
    clock.tick(60)
    code = code_for("agent.a@example.com", clock)
    assert log_in(client, "agent.a@example.com", clock, code=code).status_code == 302
    other = app.test_client()
    page = other.get("/staff/login")
    other.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": "agent.a@example.com", "password": PASSWORD},
    )
    told_before = len(messages_to("agent.a@example.com"))
    assert _code_answer(other, code).status_code == 422
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("staff.code_replayed") == 1
    told = [m.text for m in messages_to("agent.a@example.com")][told_before:]
    assert any("already been used" in text for text in told)
    assert all(code not in text for text in told)


# --- proving it again: the same lock and limits as sign-in ---


def _reauth_answer(client, clock, *, password: str, code: str | None = None, environ=None):
    page = client.get("/staff/reauth?next=/staff/cases")
    return client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": "/staff/cases",
            "password": password,
            "code": code or code_for("agent.a@example.com", clock),
        },
        environ_base=environ or {},
    )


def _last_proof():
    db.session.expire_all()
    return max(s.reauth_at for s in db.session.scalars(select(StaffSession)) if s.reauth_at)


def test_forty_wrong_reauthentications_are_stopped_long_before_forty(app, agent, clock):
    answers = [
        _reauth_answer(agent, clock, password=f"wrong guess {n}", code="123456") for n in range(40)
    ]
    statuses = [a.status_code for a in answers]
    # Ten failures lock the account (as at sign-in); the allowance ends the guessing at 20.
    assert statuses[20:] == [429] * 20
    assert member("agent.a@example.com").locked_until is not None
    assert all(b"That password and code do not match." in a.data for a in answers[:20])
    assert statuses[:20] == [422] * 20  # refused as a form is, like a wrong sign-in
    assert "Retry-After" in answers[20].headers


def test_the_right_pair_is_refused_while_reauthentication_failures_hold_the_lock(app, agent, clock):
    clock.tick()  # a code the app has not shown before, so only the lock can refuse it
    for n in range(10):
        _reauth_answer(agent, clock, password=f"wrong guess {n}", code="123456")
    proved_at = _last_proof()
    right = _reauth_answer(agent, clock, password=PASSWORD)
    # The same answer as a wrong pair: the lock is not an oracle for the right one.
    assert right.status_code == 422 and b"That password and code do not match." in right.data
    assert _last_proof() == proved_at
    # The failures count against signing in too: one lock for the account.
    assert _login_answer(app, "agent.a@example.com", PASSWORD)[0] == 422
    clock.tick(31)  # the first lock lasts 30 seconds; then the real person goes on
    again = _reauth_answer(agent, clock, password=PASSWORD)
    assert again.headers["Location"] == "/staff/cases"
    assert member("agent.a@example.com").failed_logins == 0


def test_a_right_password_with_a_wrong_code_on_reauthentication_tells_the_member(app, agent, clock):
    _reauth_answer(agent, clock, password=PASSWORD, code="000000")
    notices = [m.text for m in messages_to("agent.a@example.com")]
    assert any("right password but a wrong code" in text for text in notices)
    assert all(PASSWORD not in text for text in notices)


def test_reauthentication_fails_closed_when_the_rate_limit_store_is_down(
    app, agent, clock, database_url, make_app
):
    from portal.web.identity import staff_cookie_name

    cookie = agent.get_cookie(staff_cookie_name()).value
    down = make_app(base_env(database_url, PORTAL_REDIS_URL="redis://127.0.0.1:1/0"))
    with down.app_context():
        client = down.test_client()
        client.set_cookie(staff_cookie_name(), cookie)
        page = client.get("/staff/reauth?next=/staff/cases")
        assert page.status_code == 200
        response = client.post(
            "/staff/reauth",
            data={"csrf_token": csrf_from(page), "password": "guess", "code": "123456"},
            headers={"Referer": "https://localhost/"},
        )
        assert response.status_code == 503 and b"very busy" in response.data
    assert member("agent.a@example.com").failed_logins == 0  # refused before any check


# --- acceptance 2 ---


def test_half_signed_in_reaches_only_the_code_page_for_ten_minutes(app, agent, clock):
    client = app.test_client()
    page = client.get("/staff/login")
    client.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": "agent.a@example.com", "password": PASSWORD},
    )
    for path in ("/staff/cases", "/admin/staff", "/staff/reauth"):
        assert client.get(path).headers["Location"] == "/staff/code"
    clock.tick(11 * 60)
    assert client.get("/staff/code").headers["Location"] == "/staff/login"


# --- acceptance 3: the route walk ---


def _concrete(rule) -> str:
    return re.sub(r"<[^>]+>", "x", re.sub(r"<int:[^>]+>", "1", rule.rule))


def test_every_staff_route_answers_rightly_to_everyone(app, agent, clock, incident, write_csv):
    import_customers(
        incident, write_csv([customer_row(1, email="c@example.com", phone="")]), actor="test"
    )
    queue_notices(incident, actor="test")
    customer = app.test_client()
    sign_in(customer, "c@example.com")
    nobody = app.test_client()
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(("staff.", "admin."))]
    protected = [
        r for r in rules if getattr(app.view_functions[r.endpoint], "access", "") == "staff"
    ]
    assert protected
    for rule in protected:
        path = _concrete(rule)
        roles = app.view_functions[rule.endpoint].roles
        for client in (nobody, customer):
            if "GET" in rule.methods:
                assert client.get(path).headers["Location"] == "/staff/login", path
            else:
                token = csrf_from(customer.get("/me"))
                response = client.post(path, data={"csrf_token": token})
                assert response.status_code in (302, 400), path
                if response.status_code == 302:
                    assert response.headers["Location"] == "/staff/login"
        if "GET" in rule.methods and "<" not in rule.rule:
            expected = 200 if "agent" in roles else 403
            assert agent.get(path).status_code == expected, path
    denied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "authorization.denied")
    ).all()
    assert denied  # the agent's tries at admin pages were recorded


# --- acceptance 4 ---


@pytest.fixture
def customer_with_case(app, incident, write_csv):
    import_customers(
        incident,
        write_csv([customer_row(1, email="c@example.com", phone="", data_classes="ssn:1234")]),
        actor="test",
    )
    queue_notices(incident, actor="test")
    client = app.test_client()
    sign_in(client, "c@example.com")
    page = client.get("/me/cases")
    response = client.post(
        "/me/cases",
        data={
            "csrf_token": csrf_from(page),
            "topic": "identity_theft",
            "body": "Someone opened a card in my name.",
        },
    )
    case_path = response.headers["Location"]
    page = client.get(case_path)
    client.post(case_path, data={"csrf_token": csrf_from(page), "body": "And a loan too."})
    return client, case_path


def test_customer_case_agent_reply_and_internal_note(app, agent, customer_with_case):
    customer, case_path = customer_with_case
    case = db.session.scalars(select(Case)).one()
    queue = agent.get("/staff/cases").get_data(as_text=True)
    assert "I think my identity was stolen" in queue
    staff_path = f"/staff/cases/{case.public_id}"
    page = agent.get(staff_path)
    assert b"Someone opened a card in my name." in page.data
    assert b"Social Security number (ending 1234)" in page.data  # masked, as they see it
    agent.post(f"{staff_path}/claim", data={"csrf_token": csrf_from(page)})
    agent.post(
        f"{staff_path}/messages",
        data={
            "csrf_token": csrf_from(page),
            "body": "We froze the card, call us.",
            "kind": "reply",
        },
    )
    agent.post(
        f"{staff_path}/messages",
        data={
            "csrf_token": csrf_from(page),
            "body": "Caller sounded unsure; verify.",
            "kind": "note",
        },
    )
    seen = customer.get(case_path).get_data(as_text=True)
    assert "We froze the card, call us." in seen
    assert "Caller sounded unsure" not in seen
    mail = [m for m in messages_to("c@example.com") if "new reply" in m.row.subject]
    assert len(mail) == 1
    assert "froze" not in mail[0].text and "froze" not in mail[0].html
    staff_view = agent.get(staff_path).get_data(as_text=True)
    assert "Caller sounded unsure" in staff_view and "Claimed by" in staff_view


# --- acceptance 5 ---


def test_another_agents_case_is_refused_and_recorded(app, agent, clock, customer_with_case):
    case = db.session.scalars(select(Case)).one()
    page = agent.get(f"/staff/cases/{case.public_id}")
    agent.post(f"/staff/cases/{case.public_id}/claim", data={"csrf_token": csrf_from(page)})
    other = app.test_client()
    set_up(app, other, "agent.b@example.com", "agent", clock)
    assert other.get(f"/staff/cases/{case.public_id}").status_code == 403
    assert case.public_id not in other.get("/staff/cases").get_data(as_text=True)
    denied = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "authorization.denied", AuditEvent.subject_id == case.public_id
        )
    )
    assert len(denied.all()) == 1


def test_resending_a_link_revokes_the_old_one(app, agent, clock, customer_with_case):
    case = db.session.scalars(select(Case)).one()
    staff_path = f"/staff/cases/{case.public_id}"
    old = link_path("c@example.com")
    clock.tick(6 * 60)  # the sign-in's proof is now too old for a sensitive act
    page = agent.get(staff_path)
    asked = agent.post(
        f"{staff_path}/tools/resend-link",
        data={"csrf_token": csrf_from(page), "reason": "Customer lost the email"},
    )
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert link_path("c@example.com") == old  # nothing happened yet
    # After the password and a new code the link is resent as asked, reason and all.
    done = confirm_it_is_you(agent, asked, "agent.a@example.com", clock)
    assert done.headers["Location"] == staff_path
    new = link_path("c@example.com")
    page = agent.get(staff_path)
    missing = agent.post(
        f"{staff_path}/tools/resend-link", data={"csrf_token": csrf_from(page), "reason": ""}
    )
    assert missing.status_code == 302 and link_path("c@example.com") == new  # a reason is required
    assert new != old
    fresh = app.test_client()
    assert b"This link has been replaced" in fresh.get(old).data
    assert fresh.get(new).status_code == 200
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "agent.link_resent")
    ).one()
    assert "Customer lost the email" in event.details


def test_identity_confirmed_by_phone_sends_a_one_time_sign_in(
    app, agent, clock, customer_with_case
):
    case = db.session.scalars(select(Case)).one()
    staff_path = f"/staff/cases/{case.public_id}"
    reauth(agent, "agent.a@example.com", clock, staff_path)
    page = agent.get(staff_path)
    agent.post(
        f"{staff_path}/tools/confirm-identity",
        data={"csrf_token": csrf_from(page), "reason": "Checked date of birth by phone"},
    )
    mail = [m for m in messages_to("c@example.com") if "sign-in link" in m.row.subject][-1]
    path = next(line for line in mail.text.splitlines() if "/assisted/" in line).removeprefix(
        BASE_URL
    )
    visitor = app.test_client()
    assert visitor.get(path).status_code == 200
    assert visitor.get(path).status_code == 200  # a GET spends nothing
    page = visitor.get(path)
    assert visitor.post(path, data={"csrf_token": csrf_from(page)}).headers["Location"] == "/me"
    assert visitor.get("/me").status_code == 200
    twice = app.test_client()
    assert twice.get(path).status_code == 404  # it worked once


def test_correcting_contact_details_tells_both_addresses(app, agent, clock, customer_with_case):
    """The address on file is told (with a way to stop it); the new one is asked to confirm."""
    case = db.session.scalars(select(Case)).one()
    staff_path = f"/staff/cases/{case.public_id}"
    reauth(agent, "agent.a@example.com", clock, staff_path)
    page = agent.get(staff_path)
    agent.post(
        f"{staff_path}/tools/correct-contact",
        data={
            "csrf_token": csrf_from(page),
            "reason": "Old mailbox closed",
            "email": "c.new@example.com",
        },
    )
    told = [m for m in messages_to("c@example.com") if "change to your account" in m.row.subject]
    assert len(told) == 1
    asked = [m for m in messages_to("c.new@example.com") if "Confirm your new" in m.row.subject]
    assert len(asked) == 1


# --- acceptance 6 ---


def test_disabling_a_staff_member_ends_their_session(app, agent, clock):
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    assert agent.get("/staff/cases").status_code == 200
    target = member("agent.a@example.com").public_id
    page = admin.get("/admin/staff")
    admin.post(f"/admin/staff/{target}/disable", data={"csrf_token": csrf_from(page)})
    assert agent.get("/staff/cases").headers["Location"] == "/staff/login"
    assert "staff.disabled" in db.session.scalars(select(AuditEvent.action)).all()


def test_help_request_answers_alike_and_is_flagged_unverified(app, client, incident):
    def ask(contact):
        page = client.get("/help")
        return client.post(
            "/help",
            data={
                "csrf_token": csrf_from(page),
                "name": "Pat Example",
                "contact": contact,
                "reference": "",
                "body": "My old phone number is gone.",
            },
        )

    known, unknown = ask("c@example.com"), ask("stranger@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"] == "/help/sent"
    flagged = db.session.scalars(select(Case)).all()
    assert len(flagged) == 2 and all(c.unverified for c in flagged)
    assert ask("not a contact").status_code == 422


def test_the_audit_chain_holds_after_staff_work(app, runner, agent, customer_with_case):
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "intact" in result.output


def test_staff_read_a_case_status_in_words_beside_a_labelled_select_and_times_with_their_zone(
    app, agent, clock, customer_with_case
):
    case = db.session.scalars(select(Case)).one()
    queue = agent.get("/staff/cases").get_data(as_text=True)
    assert "<td>New</td>" in queue and "<td>new</td>" not in queue
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC</a>", queue)  # the due time's zone

    staff_path = f"/staff/cases/{case.public_id}"
    page = agent.get(staff_path).get_data(as_text=True)
    assert "Status: New" in page
    label = re.search(r'<label for="([^"]+)">([^<]+)</label>\s*<select[^>]*id="([^"]+)"', page)
    assert label and label.group(1) == label.group(3) and label.group(2) == "Change the status"
    assert '<option value="waiting">Waiting on customer</option>' in page
    assert re.search(r"· \d{4}-\d\d-\d\d \d\d:\d\d UTC</p>", page)  # each message's time

    agent.post(
        f"{staff_path}/status",
        data={"csrf_token": csrf_from(agent.get(staff_path)), "status": "waiting"},
    )
    page = agent.get(staff_path).get_data(as_text=True)
    assert "Status: Waiting on customer" in page
    assert "Status: New → Waiting on customer" in page  # the history says it in words too

    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", audit)


def test_a_staff_code_in_full_width_digits_is_refused(app, clock):
    client = app.test_client()
    set_up(app, client, "wide@example.com", "agent", clock)
    other = app.test_client()
    clock.tick()  # a step after the set-up's code, which cannot be replayed
    code = code_for("wide@example.com", clock)
    wide = "".join(chr(ord(digit) - ord("0") + ord("０")) for digit in code)
    refused = log_in(other, "wide@example.com", clock, code=wide)
    assert refused.status_code == 422, refused.status_code
    assert other.get("/staff/cases").status_code == 302
    page = other.get("/staff/code")
    accepted = other.post("/staff/code", data={"csrf_token": csrf_from(page), "code": code})
    assert accepted.status_code == 302 and other.get("/staff/cases").status_code == 200
