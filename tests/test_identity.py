"""Who is signed in: Flask-Login resolves customers and staff from their own server-side rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_login import user_loaded_from_request
from flask_login.utils import encode_cookie
from sqlalchemy import select

from portal.extensions import db
from portal.models import LoginSession
from portal.services import sessions
from portal.services import staff as staff_service
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row
from tests.customer_flow import sign_in
from tests.staff_flow import log_in, member, set_up

AGENT = "agent.a@example.com"


@pytest.fixture
def customer(app, incident, write_csv):
    import_customers(
        incident, write_csv([customer_row(1, email="c@example.com", phone="")]), actor="test"
    )
    queue_notices(incident, actor="test")
    client = app.test_client()
    sign_in(client, "c@example.com")
    return client


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, AGENT, "agent", clock)
    return client


def _customer_token(client) -> str:
    with client.session_transaction() as flask_session:
        return flask_session["sid"]


def _staff_token(client) -> str:
    return client.get_cookie("portal_staff").value


def test_both_kinds_of_people_are_resolved_by_flask_login(app, customer, agent):
    loaded = []

    def record(_app, user):
        loaded.append((user.kind, user.get_id()))

    with user_loaded_from_request.connected_to(record, app):
        me = customer.get("/me")
        queue = agent.get("/staff/cases")
    assert me.status_code == 200 and b"Sign out" in me.data
    assert queue.status_code == 200 and b"Find a customer" in queue.data
    assert [kind for kind, _id in loaded] == ["customer", "staff"]
    assert loaded[1][1] == f"staff:{member(AGENT).public_id}"


def test_a_customer_session_opens_no_staff_route_and_a_staff_session_no_customer_route(
    app, customer, agent
):
    assert customer.get("/staff/cases").headers["Location"] == "/staff/login"
    assert agent.get("/me").headers["Location"] == "/signed-out"
    # Each kind's token in the other kind's place names no session there.
    swapped = app.test_client()
    swapped.set_cookie("portal_staff", _customer_token(customer))
    assert swapped.get("/staff/cases").headers["Location"] == "/staff/login"
    swapped = app.test_client()
    with swapped.session_transaction() as flask_session:
        flask_session["sid"] = _staff_token(agent)
    assert swapped.get("/me").headers["Location"] == "/signed-out"


def test_one_browser_signed_in_as_both_is_each_only_where_it_belongs(
    app, agent, incident, write_csv
):
    import_customers(
        incident, write_csv([customer_row(1, email="c@example.com", phone="")]), actor="test"
    )
    queue_notices(incident, actor="test")
    sign_in(agent, "c@example.com")  # the same browser, now with both cookies
    me, queue = agent.get("/me"), agent.get("/staff/cases")
    assert me.status_code == 200 and queue.status_code == 200
    # Each page's way out is for the person that page is about.
    assert b'action="/logout"' in me.data and b'action="/staff/logout"' not in me.data
    assert b'action="/staff/logout"' in queue.data and b'action="/logout"' not in queue.data


def test_a_revoked_or_expired_customer_session_signs_nobody_in(app, customer):
    row = db.session.scalars(select(LoginSession)).one()
    sessions.end_all_sessions(row.customer_id)
    db.session.commit()
    assert customer.get("/me").headers["Location"] == "/signed-out"

    sign_in(customer, "c@example.com")
    row = db.session.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None))).one()
    row.last_seen_at -= timedelta(minutes=16)  # as if idle past its limit
    db.session.commit()
    assert customer.get("/me").headers["Location"] == "/signed-out"


def test_a_revoked_expired_or_disabled_staff_session_signs_nobody_in(app, clock):
    client = app.test_client()
    set_up(app, client, AGENT, "agent", clock)
    staff_service.end_sessions(member(AGENT), actor="test")
    assert client.get("/staff/cases").headers["Location"] == "/staff/login"

    log_in(client, AGENT, clock)
    assert client.get("/staff/cases").status_code == 200
    clock.tick(16 * 60)  # idle past its limit
    assert client.get("/staff/cases").headers["Location"] == "/staff/login"

    log_in(client, AGENT, clock)
    staff_service.disable(member(AGENT), actor="test")
    assert client.get("/staff/cases").headers["Location"] == "/staff/login"


def test_no_remember_me_cookie_is_set_and_none_signs_anyone_in(app, customer, agent):
    for name in ("remember_token", "portal_remember"):
        assert customer.get_cookie(name) is None and agent.get_cookie(name) is None
    stranger = app.test_client()
    for name in ("remember_token", "portal_remember"):
        # Even one signed with the app's own key, as Flask-Login would make it.
        stranger.set_cookie(name, encode_cookie(f"staff:{member(AGENT).public_id}"))
    assert stranger.get("/staff/cases").headers["Location"] == "/staff/login"
    assert stranger.get("/me").headers["Location"] == "/signed-out"
