"""Security keys (WebAuthn) for staff, and the rule that admins use one (checklist OTP-03).

The portal runs here as in production: PORTAL_ADMIN_SECURITY_KEY_REQUIRED=1. The key is a
software authenticator (tests/security_key.py) answering the options each page gives its script.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import select

from portal.config import load
from portal.extensions import db
from portal.models import AuditEvent, SecurityKey
from tests.conftest import base_env
from tests.customer_flow import csrf_from, messages_to
from tests.security_key import SoftKey, b64url, options_in
from tests.staff_flow import PASSWORD, code_for, log_in, member, set_up

AGENT = "agent.k@example.com"
ADMIN = "admin.k@example.com"


@pytest.fixture
def env(database_url) -> dict[str, str]:
    return base_env(database_url, PORTAL_ADMIN_SECURITY_KEY_REQUIRED="1")


def _add_key(client, key: SoftKey, name: str = "blue key", **how):
    """Add a key on /staff/security-keys/new (a fresh proof is already there)."""
    page = client.get("/staff/security-keys/new")
    assert page.status_code == 200, page.headers.get("Location")
    return client.post(
        "/staff/security-keys/new",
        data={
            "csrf_token": csrf_from(page),
            "name": name,
            "key_answer": key.register(options_in(page), **how),
        },
    )


def _password(client, email: str):
    page = client.get("/staff/login")
    response = client.post(
        "/staff/login", data={"csrf_token": csrf_from(page), "email": email, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/staff/code"
    return client.get("/staff/code")


def _key_sign_in(client, page, answer: str):
    return client.post("/staff/code", data={"csrf_token": csrf_from(page), "key_answer": answer})


def _events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, AGENT, "agent", clock)
    return client


def test_a_staff_member_registers_a_named_key_and_signs_in_with_it(app, agent, clock):
    key = SoftKey()
    added = _add_key(agent, key, "blue key")
    assert added.headers["Location"] == "/staff/security-keys"
    listing = agent.get("/staff/security-keys").get_data(as_text=True)
    assert "blue key" in listing and "Remove blue key" in listing
    assert any('"blue key" was added' in m.text for m in messages_to(AGENT))
    assert _events("staff.security_key_added")

    client = app.test_client()
    page = _password(client, AGENT)
    options = options_in(page)
    assert options["rpId"] == "portal.example.test"  # BASE_URL's host
    assert options["userVerification"] == "preferred"
    signed_in = _key_sign_in(client, page, key.sign(options))
    assert signed_in.headers["Location"] == "/staff/cases"
    assert client.get("/staff/cases").status_code == 200
    assert json.loads(_events("staff.signed_in")[-1].details)["factor"] == "security key"
    stored = db.session.scalar(select(SecurityKey))
    assert stored.sign_count == 1 and stored.last_used_at is not None


def test_registration_asks_for_attestation_none_and_excludes_keys_already_there(app, agent):
    key = SoftKey()
    _add_key(agent, key)
    options = options_in(agent.get("/staff/security-keys/new"))
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["rp"]["id"] == "portal.example.test"
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(key.credential_id)]
    again = _add_key(agent, key, "same key")  # the same credential twice: refused
    assert again.status_code == 422 and b"already registered" in again.data


def test_an_answer_made_for_another_origin_is_refused(app, agent, clock):
    phished = _add_key(agent, SoftKey(), origin="https://portal.example.test.evil.example")
    assert phished.status_code == 422 and b"could not be checked" in phished.data
    key = SoftKey()
    _add_key(agent, key)

    client = app.test_client()
    page = _password(client, AGENT)
    # A look-alike site relays our challenge; the browser signs the origin it is really on.
    refused = _key_sign_in(
        client, page, key.sign(options_in(page), origin="https://portal-example.test")
    )
    assert refused.status_code == 422 and b"was not accepted" in refused.data
    assert client.get("/staff/cases").headers["Location"] == "/staff/code"
    assert member(AGENT).failed_logins == 1
    # Another relying party (the look-alike's own domain) is refused too.
    page = client.get("/staff/code")
    other = _key_sign_in(client, page, key.sign(options_in(page), rp_id="example.test"))
    assert other.status_code == 422
    assert any("security key answer that was refused" in m.text for m in messages_to(AGENT))


def test_a_replayed_answer_is_refused(app, agent, clock):
    key = SoftKey()
    _add_key(agent, key)
    first = app.test_client()
    page = _password(first, AGENT)
    answer = key.sign(options_in(page))
    assert _key_sign_in(first, page, answer).headers["Location"] == "/staff/cases"
    # The same answer again (captured on the way, say), from another browser that got as far
    # as the password: refused, its challenge was spent and the counter has moved on.
    other = app.test_client()
    page = _password(other, AGENT)
    assert _key_sign_in(other, page, answer).status_code == 422
    assert other.get("/staff/cases").headers["Location"] == "/staff/code"


def test_a_copied_key_whose_counter_went_back_is_refused_and_recorded(app, agent, clock):
    key = SoftKey()
    _add_key(agent, key)
    client = app.test_client()
    page = _password(client, AGENT)
    _key_sign_in(client, page, key.sign(options_in(page)))

    clone = app.test_client()
    page = _password(clone, AGENT)
    # A fresh challenge, correctly signed, but with the count the key had a sign-in ago.
    refused = _key_sign_in(clone, page, key.sign(options_in(page), counter=1))
    assert refused.status_code == 422
    assert clone.get("/staff/cases").headers["Location"] == "/staff/code"
    cloned = _events("staff.security_key_cloned")
    assert len(cloned) == 1 and cloned[0].outcome == "failure"
    assert any("may have been copied" in m.text for m in messages_to(AGENT))
    assert db.session.scalar(select(SecurityKey)).sign_count == 1  # not moved back


def test_a_key_that_keeps_no_counter_still_signs_in(app, agent, clock):
    key = SoftKey(counts=False)
    _add_key(agent, key)
    for _ in range(2):
        client = app.test_client()
        page = _password(client, AGENT)
        assert _key_sign_in(client, page, key.sign(options_in(page))).headers["Location"] == (
            "/staff/cases"
        )


def test_a_challenge_is_for_its_own_session_and_a_few_minutes_only(app, agent, clock):
    key = SoftKey()
    _add_key(agent, key)
    one, two = app.test_client(), app.test_client()
    page_one = _password(one, AGENT)
    page_two = _password(two, AGENT)
    # Signed for session one's challenge, sent by session two: refused.
    assert _key_sign_in(two, page_two, key.sign(options_in(page_one))).status_code == 422
    page = one.get("/staff/code")
    clock.tick(6 * 60)
    assert _key_sign_in(one, page, key.sign(options_in(page))).status_code == 422


# --- the admins' rule (OTP-03) ---


def test_an_admin_cannot_finish_signing_in_with_an_app_code_only(app, clock):
    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    # Signed in with the app (no key yet): only the page to add a key opens.
    for path in ("/staff/cases", "/admin/", "/admin/staff", "/staff/customers"):
        assert client.get(path).headers.get("Location") == "/staff/security-keys", path
    keys_page = client.get("/staff/security-keys")
    assert keys_page.status_code == 200 and b"only page you can use" in keys_page.data
    later = app.test_client()
    log_in(later, ADMIN, clock)
    assert later.get("/admin/").headers.get("Location") == "/staff/security-keys"

    key = SoftKey()
    assert _add_key(client, key).headers["Location"] == "/staff/security-keys"
    assert client.get("/admin/").status_code == 200

    # With a key, an app code no longer signs the admin in, whatever it is.
    other = app.test_client()
    page = _password(other, ADMIN)
    assert b'name="code"' not in page.data  # no code field is offered
    clock.tick()
    refused = other.post(
        "/staff/code", data={"csrf_token": csrf_from(page), "code": code_for(ADMIN, clock)}
    )
    assert refused.status_code == 422 and b"security key" in refused.data
    assert other.get("/admin/").headers["Location"] == "/staff/code"
    assert _events("staff.code_refused")
    # The key signs them in.
    page = other.get("/staff/code")
    assert _key_sign_in(other, page, key.sign(options_in(page))).headers["Location"] == (
        "/staff/cases"
    )
    assert other.get("/admin/").status_code == 200


def test_an_admin_signed_in_with_the_app_only_reaches_no_other_staff_url(app, clock):
    """The crawl: every staff and admin route, GET or POST, sends a keyless admin to add a key."""
    from portal.web.access import KEY_SETUP_ENDPOINTS

    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    token = csrf_from(client.get("/staff/security-keys"))
    crawled = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "access", "") != "staff" or rule.endpoint in KEY_SETUP_ENDPOINTS:
            continue
        path = re.sub(r"<[^>]+>", "x", re.sub(r"<int:[^>]+>", "1", rule.rule))
        if "GET" in rule.methods:
            answer = client.get(path)
        else:
            answer = client.post(path, data={"csrf_token": token})
        assert answer.headers.get("Location") == "/staff/security-keys", (rule.rule, answer)
        crawled += 1
    assert crawled > 20
    assert not _events("staff.security_key_added")


def test_an_admin_with_a_key_confirms_it_is_them_with_the_key_not_a_code(app, clock):
    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    key = SoftKey()
    _add_key(client, key)
    clock.tick(6 * 60)
    page = client.get("/staff/reauth?next=/admin/")
    assert b'name="code"' not in page.data
    by_code = client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": "/admin/",
            "password": PASSWORD,
            "code": code_for(ADMIN, clock),
        },
    )
    assert by_code.status_code == 422 and b"security key" in by_code.data
    page = client.get("/staff/reauth?next=/admin/")
    wrong_password = client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": "/admin/",
            "password": "not my password",
            "key_answer": key.sign(options_in(page)),
        },
    )
    assert wrong_password.status_code == 422
    page = client.get("/staff/reauth?next=/admin/")
    by_key = client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": "/admin/",
            "password": PASSWORD,
            "key_answer": key.sign(options_in(page)),
        },
    )
    assert by_key.headers["Location"] == "/admin/"
    assert json.loads(_events("staff.reauthenticated")[-1].details)["factor"] == "security key"


def test_a_non_admin_may_still_use_the_app_code_and_confirm_with_a_key(app, agent, clock):
    key = SoftKey()
    _add_key(agent, key)
    client = app.test_client()
    response = log_in(client, AGENT, clock)  # the app's code, with a key registered
    assert response.headers["Location"] == "/staff/cases"
    page = _password(app.test_client(), AGENT)
    assert b'name="code"' in page.data and b"needs JavaScript" in page.data
    assert b"Or enter the code from your authenticator app" in page.data

    clock.tick(6 * 60)
    page = client.get("/staff/reauth?next=/staff/cases")
    assert b'name="code"' in page.data
    by_key = client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": "/staff/cases",
            "password": PASSWORD,
            "key_answer": key.sign(options_in(page)),
        },
    )
    assert by_key.headers["Location"] == "/staff/cases"


def test_the_policy_off_lets_admins_use_the_app(app, clock):
    app.config["ADMIN_SECURITY_KEY_REQUIRED"] = False
    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    _add_key(client, SoftKey())
    other = app.test_client()
    assert log_in(other, ADMIN, clock).headers["Location"] == "/staff/cases"
    assert other.get("/admin/").status_code == 200


def test_the_policy_is_on_in_production_and_off_in_development_unless_set(tmp_path):
    production = {
        "PORTAL_SECRET_KEY": "x" * 40,
        "PORTAL_BASE_URL": "https://help.example.com",
        "PORTAL_DATA_KEYS": "k",
        "PORTAL_AUDIT_KEYS": "Y" * 43,
        "PORTAL_REDIS_URL": "redis://127.0.0.1:6379/4",
        "PORTAL_STAFF_SAME_HOST": "1",
    }
    assert load(production, tmp_path)["ADMIN_SECURITY_KEY_REQUIRED"] is True
    assert load({"PORTAL_ENV": "development"}, tmp_path)["ADMIN_SECURITY_KEY_REQUIRED"] is False
    off = {**production, "PORTAL_ADMIN_SECURITY_KEY_REQUIRED": "0"}
    assert load(off, tmp_path)["ADMIN_SECURITY_KEY_REQUIRED"] is False
    with pytest.raises(Exception, match="PORTAL_ADMIN_SECURITY_KEY_REQUIRED"):
        load({**production, "PORTAL_ADMIN_SECURITY_KEY_REQUIRED": "maybe"}, tmp_path)


# --- removing a key ---


def test_removing_a_key_needs_a_fresh_proof_and_never_takes_an_admins_last_key(app, clock):
    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    blue, spare = SoftKey(), SoftKey()
    _add_key(client, blue, "blue key")
    keys = db.session.scalars(select(SecurityKey)).all()
    page = client.get("/staff/security-keys")
    refused = client.post(
        f"/staff/security-keys/{keys[0].public_id}/remove",
        data={"csrf_token": csrf_from(page)},
        follow_redirects=True,
    )
    assert b"only security key" in refused.data
    assert db.session.scalar(select(SecurityKey.id)) is not None
    _add_key(client, spare, "spare key")

    clock.tick(6 * 60)  # the proof is old now
    page = client.get("/staff/security-keys")
    asked = client.post(
        f"/staff/security-keys/{keys[0].public_id}/remove", data={"csrf_token": csrf_from(page)}
    )
    assert asked.headers["Location"].startswith("/staff/reauth")
    proof = client.get(asked.headers["Location"])
    form = re.search(r'<form method="post" action="([^"]+)" class="panel"', proof.text)
    resume = re.search(r'name="resume" value="([^"]*)"', proof.text)
    done = client.post(
        html.unescape(form[1]),
        data={
            "csrf_token": csrf_from(proof),
            "next": "/staff/security-keys",
            "resume": resume[1],
            "password": PASSWORD,
            "key_answer": spare.sign(options_in(proof)),
        },
    )
    assert done.headers["Location"] == "/staff/security-keys"
    db.session.expire_all()
    assert [k.name for k in db.session.scalars(select(SecurityKey))] == ["spare key"]
    assert _events("staff.security_key_removed")
    assert any('"blue key" was removed' in m.text for m in messages_to(ADMIN))


def test_a_key_of_another_member_cannot_be_removed(app, agent, clock):
    _add_key(agent, SoftKey())
    theirs = db.session.scalar(select(SecurityKey.public_id))
    other = app.test_client()
    set_up(app, other, "agent.b@example.com", "agent", clock)
    page = other.get("/staff/security-keys")
    answer = other.post(
        f"/staff/security-keys/{theirs}/remove",
        data={"csrf_token": csrf_from(page)},
        follow_redirects=True,
    )
    assert b"not one of yours" in answer.data
    assert db.session.scalar(select(SecurityKey.public_id)) == theirs


def test_a_new_key_needs_a_name_and_a_fresh_proof(app, agent, clock):
    page = agent.get("/staff/security-keys/new")
    unnamed = agent.post(
        "/staff/security-keys/new",
        data={"csrf_token": csrf_from(page), "name": " ", "key_answer": "{}"},
    )
    assert unnamed.status_code == 422
    assert db.session.scalar(select(SecurityKey.id)) is None
    clock.tick(6 * 60)
    assert agent.get("/staff/security-keys/new").headers["Location"].startswith("/staff/reauth")


def test_an_mfa_reset_removes_the_members_keys(app, agent, clock):
    from portal.services.staff import reset_mfa

    _add_key(agent, SoftKey())
    reset_mfa(member(AGENT), actor="test")
    db.session.flush()
    assert db.session.scalar(select(SecurityKey.id)) is None
