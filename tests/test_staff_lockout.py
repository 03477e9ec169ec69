"""A stranger who knows a staff address must not keep the member out (AUTH-07).

Found by the second penetration test: wrong passwords from one network locked the account for
everyone, again each time the lock ran out. A browser the member has signed in from (password
and second factor) now carries a signed device cookie and answers only to its own failures.
"""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.models import AuditEvent
from tests.customer_flow import csrf_from, messages_to
from tests.staff_flow import PASSWORD, code_for, log_in, member, set_up

MEMBER = "agent.a@example.com"
OTHER = "agent.b@example.com"
STRANGER_NETWORK = {"REMOTE_ADDR": "203.0.113.66"}
MEMBERS_NETWORK = {"REMOTE_ADDR": "198.51.100.20"}
DEVICE_COOKIE = "portal_staff_device"


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, MEMBER, "agent", clock)
    return client


@pytest.fixture
def members_browser(app, agent, clock):
    """The member's own browser, after one full sign-in (password and code) on it."""
    client = app.test_client()
    assert log_in(client, MEMBER, clock).headers["Location"] == "/staff/cases"
    assert client.get_cookie(DEVICE_COOKIE) is not None
    return client


def _password_step(app, password: str, environ: dict, client=None):
    client = client or app.test_client()
    page = client.get("/staff/login", environ_base=environ)
    response = client.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": MEMBER, "password": password},
        environ_base=environ,
    )
    return client, response


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))[:300]


def _lock_out_by_a_stranger(app, clock) -> None:
    for n in range(17):
        _password_step(app, f"a stranger's guess {n}", STRANGER_NETWORK)
    for _hour in range(3):
        clock.tick(3601)  # the lock has run out, and the stranger is first again
        _password_step(app, "one more guess an hour", STRANGER_NETWORK)
    clock.tick(60)


def test_a_stranger_who_knows_only_a_staff_address_cannot_keep_the_member_out(
    app, members_browser, clock
):
    """Finding P1 (AUTH-07): POST /staff/login with the member's address and wrong passwords,
    17 times, then once more each time the lock runs out -> the member, from their own browser
    with the right password and code, gets in while the stranger stays locked out."""
    _lock_out_by_a_stranger(app, clock)
    member_, response = _password_step(app, PASSWORD, MEMBERS_NETWORK, members_browser)
    assert response.headers.get("Location") == "/staff/code", _text(response)
    page = member_.get("/staff/code", environ_base=MEMBERS_NETWORK)
    signed_in = member_.post(
        "/staff/code",
        data={"csrf_token": csrf_from(page), "code": code_for(MEMBER, clock)},
        environ_base=MEMBERS_NETWORK,
    )
    assert signed_in.headers.get("Location") == "/staff/cases"
    # The member's sign-in did not hand the stranger a fresh set of guesses: still locked.
    _stranger, refused = _password_step(app, PASSWORD, STRANGER_NETWORK)
    assert refused.status_code == 422
    assert "That email and password do not match" in _text(refused)


def test_a_new_browser_stays_under_the_account_lock(app, members_browser, clock):
    _lock_out_by_a_stranger(app, clock)
    _client, response = _password_step(app, PASSWORD, MEMBERS_NETWORK)
    assert response.status_code == 422
    assert "That email and password do not match" in _text(response)


def test_a_forged_or_another_members_device_cookie_gives_no_exemption(app, members_browser, clock):
    other = app.test_client()
    set_up(app, other, OTHER, "agent", clock)
    assert log_in(other, OTHER, clock).headers["Location"] == "/staff/cases"
    others_device = other.get_cookie(DEVICE_COOKIE).value
    own = members_browser.get_cookie(DEVICE_COOKIE).value
    nonce, mac = own.split(".")
    forged = [others_device, f"{nonce}.{'0' * len(mac)}", f"another-nonce.{mac}", "junk"]
    _lock_out_by_a_stranger(app, clock)
    for value in forged:
        client = app.test_client()
        client.set_cookie(DEVICE_COOKIE, value)
        _client, response = _password_step(app, PASSWORD, MEMBERS_NETWORK, client)
        assert response.status_code == 422, value


def test_a_known_device_with_ten_wrong_passwords_is_itself_delayed(app, members_browser, clock):
    for n in range(10):
        _password_step(app, f"a thief's guess {n}", MEMBERS_NETWORK, members_browser)
    _client, response = _password_step(app, PASSWORD, MEMBERS_NETWORK, members_browser)
    assert response.status_code == 422
    assert "That email and password do not match" in _text(response)
    # The device's failures are its own: a new browser with the right pair is not locked.
    _client, elsewhere = _password_step(app, PASSWORD, MEMBERS_NETWORK)
    assert elsewhere.headers.get("Location") == "/staff/code"
    clock.tick(31)
    _client, later = _password_step(app, PASSWORD, MEMBERS_NETWORK, members_browser)
    assert later.headers.get("Location") == "/staff/code"


def test_the_member_is_mailed_once_when_a_stranger_locks_the_account(app, agent, clock):
    told_before = len(messages_to(MEMBER))
    _lock_out_by_a_stranger(app, clock)
    told = [m.text for m in messages_to(MEMBER)][told_before:]
    assert len(told) == 1
    assert "browser you have not used" in told[0]
    assert "Your own browsers are not affected" in told[0]
    assert "guess" not in told[0] and PASSWORD not in told[0]
    db.session.expire_all()
    assert member(MEMBER).locked_until is not None
    assert db.session.query(AuditEvent).filter_by(action="staff.locked").count() >= 1


def test_a_stranger_who_spends_the_accounts_rate_limit_does_not_shut_out_the_members_browser(
    app, members_browser, clock
):
    answers = [
        _password_step(app, f"guess {n}", STRANGER_NETWORK)[1].status_code for n in range(31)
    ]
    assert answers[-1] == 429  # the per-account limit holds for strangers
    _client, response = _password_step(app, PASSWORD, MEMBERS_NETWORK, members_browser)
    assert response.headers.get("Location") == "/staff/code", _text(response)
