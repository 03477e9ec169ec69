"""Where you are signed in: people see their live sessions and end them (SES-06)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Customer, LoginSession
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row
from tests.customer_flow import code_sent_to, csrf_from, sign_in, submit_code
from tests.staff_flow import confirm_it_is_you, log_in, set_up

ANN = "ann@example.com"
BOB = "bob@example.com"
ADMIN = "admin.a@example.com"
AGENT = "agent.a@example.com"
PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
MAC_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15"
)


@pytest.fixture
def people(incident, write_csv):
    rows = [
        customer_row(1, full_name="Ann Smith", email=ANN, phone=""),
        customer_row(2, full_name="Bob Jones", email=BOB, phone=""),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")


def browser(app, user_agent: str = MAC_UA):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def signed_in(app, address: str, user_agent: str = MAC_UA):
    client = browser(app, user_agent)
    assert sign_in(client, address).status_code == 200
    return client


def session_ids(address: str) -> list[int]:
    """The ids of this customer's sessions not ended, oldest first."""
    db.session.expire_all()
    customer = next(c for c in db.session.scalars(select(Customer)) if c.email == address)
    return list(
        db.session.scalars(
            select(LoginSession.id)
            .where(LoginSession.customer_id == customer.id, LoginSession.revoked_at.is_(None))
            .order_by(LoginSession.id)
        )
    )


def actions() -> list[tuple[str, str]]:
    db.session.expire_all()
    return [(e.action, e.outcome) for e in db.session.scalars(select(AuditEvent))]


def is_refused(client) -> bool:
    """Today's answer to an ended customer session: back to the way in, nothing shown."""
    response = client.get("/me")
    return response.status_code == 302 and response.headers["Location"] == "/signed-out"


def post(client, page_path: str, action: str, **data):
    page = client.get(page_path)
    return client.post(action, data={"csrf_token": csrf_from(page), **data})


# --- customers ---


def test_the_account_page_links_to_where_you_are_signed_in(app, people):
    me = signed_in(app, ANN).get("/me")
    assert b'href="/me/sessions"' in me.data


def test_the_page_lists_each_browser_by_name_and_marks_this_one(app, people):
    phone = signed_in(app, ANN, PHONE_UA)
    laptop = signed_in(app, ANN, MAC_UA)
    page = laptop.get("/me/sessions")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Chrome on Android" in text and "Safari on macOS" in text
    # "This browser" sits beside the laptop (Safari), not the phone.
    marked = re.search(r"<h2>([^<]*) <strong class=\"tag-here\">This browser</strong></h2>", text)
    assert marked and marked[1] == "Safari on macOS"
    assert "127.0.0.1" not in text  # no network address shown to customers
    assert phone.get("/me/sessions").status_code == 200


def test_a_customer_ends_another_browser_and_that_browser_is_refused(app, people):
    a = signed_in(app, ANN)
    b = signed_in(app, ANN, PHONE_UA)
    _a_id, b_id = session_ids(ANN)

    response = post(a, "/me/sessions", f"/me/sessions/{b_id}/end")

    assert response.headers["Location"] == "/me/sessions"
    assert "Signed out there" in a.get("/me/sessions").get_data(as_text=True)
    assert is_refused(b)
    assert a.get("/me").status_code == 200
    assert ("session.ended_elsewhere", "success") in actions()


def test_sign_out_all_others_keeps_only_this_browser(app, people):
    a = signed_in(app, ANN)
    b = signed_in(app, ANN, PHONE_UA)
    c = signed_in(app, ANN, MAC_UA)
    bob = signed_in(app, BOB)

    post(a, "/me/sessions", "/me/sessions/end-others")

    page = a.get("/me/sessions").get_data(as_text=True)
    assert "Signed out of 2 other places" in page
    assert "You are signed in only here." in page
    assert is_refused(b) and is_refused(c)
    assert a.get("/me").status_code == 200
    assert bob.get("/me").status_code == 200  # another customer is untouched
    assert ("session.others_ended", "success") in actions()


def test_without_a_fresh_code_nothing_ends_until_the_customer_confirms(app, people, clock):
    a = signed_in(app, ANN)
    b = signed_in(app, ANN, PHONE_UA)
    clock.move(timedelta(minutes=6))  # past the 5-minute step-up window
    assert b.get("/me").status_code == 200  # b stays live (idle from here)

    page = a.get("/me/sessions")
    assert b"Sign out all others" not in page.data and b"Send me a code" in page.data
    refused = a.post("/me/sessions/end-others", data={"csrf_token": csrf_from(page)})
    assert refused.headers["Location"] == "/me/sessions"
    assert b.get("/me").status_code == 200  # nothing ended

    started = a.post("/me/confirm", data={"csrf_token": csrf_from(page), "next": "/me/sessions"})
    assert started.headers["Location"] == "/verify"
    assert submit_code(a, code_sent_to(ANN)).headers["Location"] == "/me/sessions"
    post(a, "/me/sessions", "/me/sessions/end-others")
    assert is_refused(b)


def test_another_customers_session_id_ends_nothing(app, people):
    ann = signed_in(app, ANN)
    bob = signed_in(app, BOB)
    (bob_id,) = session_ids(BOB)
    (ann_id,) = session_ids(ANN)

    answer = post(ann, "/me/sessions", f"/me/sessions/{bob_id}/end")

    assert answer.headers["Location"] == "/me/sessions"
    assert "already signed out" in ann.get("/me/sessions").get_data(as_text=True)
    assert bob.get("/me").status_code == 200
    assert session_ids(BOB) == [bob_id]
    assert ("session.ended_elsewhere", "failure") in actions()
    # Its own id ends nothing either (signing out is the way to leave), nor a huge number.
    post(ann, "/me/sessions", f"/me/sessions/{ann_id}/end")
    assert ann.get("/me").status_code == 200
    huge = post(ann, "/me/sessions", "/me/sessions/99999999999999999999/end")
    assert huge.status_code == 404  # past any row id the database holds: no such place
    assert ann.get("/me").status_code == 200 and bob.get("/me").status_code == 200


def test_the_sessions_pages_are_for_signed_in_customers_only(app, people):
    stranger = app.test_client()
    assert stranger.get("/me/sessions").headers["Location"] == "/signed-out"
    ann = signed_in(app, ANN)
    (ann_id,) = session_ids(ANN)
    # Without the form's token, nothing ends.
    assert ann.post("/me/sessions/end-others").status_code == 400
    assert ann.post(f"/me/sessions/{ann_id}/end").status_code == 400


def test_a_password_change_ends_the_others_and_this_browser_keeps_its_name(app, people):
    a = signed_in(app, ANN, PHONE_UA)
    b = signed_in(app, ANN)
    good = "correct horse battery staple"
    post(a, "/me/password", "/me/password", password=good, confirm=good)
    assert is_refused(b)
    assert "Chrome on Android" in a.get("/me/sessions").get_data(as_text=True)


def test_after_an_authenticator_change_the_page_offers_to_sign_out_everywhere_else(app, people):
    a = signed_in(app, ANN)
    b = signed_in(app, ANN, PHONE_UA)
    page = a.get("/me/authenticator")
    assert b"You are also signed in in 1 other place" in page.data
    form = re.search(r'action="(/me/sessions/end-others)"', page.get_data(as_text=True))
    assert form
    a.post(form[1], data={"csrf_token": csrf_from(page)})
    assert is_refused(b)
    assert b"You are also signed in" not in a.get("/me/authenticator").data


# --- staff ---


@pytest.fixture
def admin(app, clock):
    client = browser(app)
    set_up(app, client, ADMIN, "admin", clock)
    return client


def customer_public_id(address: str) -> str:
    db.session.expire_all()
    return next(c.public_id for c in db.session.scalars(select(Customer)) if c.email == address)


def test_an_admin_ends_every_session_of_one_customer(app, people, admin, clock):
    ann_a, ann_b = signed_in(app, ANN), signed_in(app, ANN, PHONE_UA)
    bob = signed_in(app, BOB)
    record = f"/staff/customers/{customer_public_id(ANN)}"
    assert b"Signed in now in 2 places." in admin.get(record).data

    clock.move(timedelta(minutes=6))  # the admin's proof is old: asked again first
    asked = post(admin, record, f"{record}/end-sessions", reason="Phone reported stolen")
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert ann_a.get("/me").status_code == 200  # nothing ended yet
    done = confirm_it_is_you(admin, asked, ADMIN, clock)

    assert done.headers["Location"] == record
    assert "2 sessions ended" in admin.get(record).get_data(as_text=True)
    assert is_refused(ann_a) and is_refused(ann_b)
    assert bob.get("/me").status_code == 200
    assert ("session.ended_by_staff", "success") in actions()


def test_an_agent_cannot_end_a_customers_sessions(app, people, clock):
    ann = signed_in(app, ANN)
    agent = browser(app)
    set_up(app, agent, AGENT, "agent", clock)
    record = f"/staff/customers/{customer_public_id(ANN)}"
    page = agent.get(record)
    assert b"Their sessions" not in page.data
    refused = agent.post(
        f"{record}/end-sessions", data={"csrf_token": csrf_from(page), "reason": "curious agent"}
    )
    assert refused.status_code == 403
    assert ann.get("/me").status_code == 200


def test_the_emergency_stop_signs_out_every_browser_but_the_admins(app, people, admin, clock):
    customers = [signed_in(app, ANN), signed_in(app, ANN, PHONE_UA), signed_in(app, BOB)]
    agent = browser(app)
    set_up(app, agent, AGENT, "agent", clock)
    admin_elsewhere = browser(app, PHONE_UA)
    log_in(admin_elsewhere, ADMIN, clock)
    assert admin_elsewhere.get("/staff/cases").status_code == 200

    wrong = post(admin, "/admin/staff", "/admin/sessions/end-all", phrase="end it")
    assert wrong.status_code == 422
    assert b"exactly to confirm. Nothing was ended." in wrong.data
    assert all(c.get("/me").status_code == 200 for c in customers)

    done = post(admin, "/admin/staff", "/admin/sessions/end-all", phrase="end every session")

    assert done.headers["Location"] == "/admin/staff"
    page = admin.get("/admin/staff").get_data(as_text=True)
    assert "3 customer sessions, 2 staff sessions" in page
    assert all(is_refused(c) for c in customers)
    assert agent.get("/staff/cases").headers["Location"] == "/staff/login"
    assert admin_elsewhere.get("/staff/cases").headers["Location"] == "/staff/login"
    assert admin.get("/staff/cases").status_code == 200
    assert ("session.all_ended", "success") in actions()


def test_the_emergency_stop_needs_a_fresh_proof(app, people, admin, clock):
    ann = signed_in(app, ANN)
    clock.move(timedelta(minutes=6))
    assert ann.get("/me").status_code == 200
    asked = post(admin, "/admin/staff", "/admin/sessions/end-all", phrase="END EVERY SESSION")
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert ann.get("/me").status_code == 200
    confirm_it_is_you(admin, asked, ADMIN, clock)
    assert is_refused(ann)


def test_a_staff_member_ends_their_own_other_sessions(app, clock):
    first = browser(app)
    set_up(app, first, AGENT, "agent", clock)
    second = browser(app, PHONE_UA)
    log_in(second, AGENT, clock)
    third = browser(app)
    log_in(third, AGENT, clock)
    page = second.get("/staff/sessions").get_data(as_text=True)
    assert "Chrome on Android <strong>(this browser)</strong>" in page

    ids = [int(i) for i in re.findall(r'action="/staff/sessions/(\d+)/end"', page)]
    assert len(ids) == 2
    post(second, "/staff/sessions", f"/staff/sessions/{ids[0]}/end")
    ended = [c for c in (first, third) if c.get("/staff/cases").status_code != 200]
    assert len(ended) == 1

    post(second, "/staff/sessions", "/staff/sessions/end-others")
    assert first.get("/staff/cases").status_code == 302
    assert third.get("/staff/cases").status_code == 302
    assert second.get("/staff/cases").status_code == 200
