"""Signed links, one table of purposes: a token opens its own route only, for its lifetime only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Case, CaseMessage, Challenge, Customer, LoginSession, StaffSession
from portal.services import agent_tools, cases, staff, support_desk, tokens
from portal.services.customers import find_by_email
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.tokens import KINDS, Purpose
from tests.conftest import BASE_URL, customer_row
from tests.customer_flow import csrf_from, link_path, messages_to
from tests.staff_flow import PASSWORD

ANN = "ann@example.com"
ANN_NEW = "ann.new@example.net"
WRITER = "writer@example.net"
AGENT = "agent.tokens@example.com"


def _token_in(address: str, path: str) -> str:
    """The token of the newest link to `path` mailed to address."""
    for message in reversed(messages_to(address)):
        for line in message.text.splitlines():
            if line.startswith(BASE_URL + path):
                return line.removeprefix(BASE_URL + path)
    raise AssertionError(f"no {path} link was mailed to {address}")


@pytest.fixture
def one_of_each(app, incident, write_csv) -> dict[Purpose, tuple[str, str]]:
    """A live link of every purpose, each made the way the portal makes it, as the (public id,
    nonce) it carries."""
    import_customers(incident, write_csv([customer_row(1, email=ANN, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    invitation = staff.invite(AGENT, "agent", actor="test").removeprefix(BASE_URL)
    agent = staff.by_email(AGENT)
    cases.help_request(name="Wanda Writer", contact=WRITER, reference="", body="No code came.")
    db.session.commit()
    support_desk.reply(agent, db.session.scalars(select(Case)).one(), "Here is our answer.")
    agent_tools.confirm_identity(agent, _customer(ANN), "Checked by phone")
    agent_tools.correct_contact(agent, _customer(ANN), "Old mailbox closed", email=ANN_NEW)
    tokens_by_purpose = {
        Purpose.NOTICE_LINK: link_path(ANN).removeprefix("/a/"),
        Purpose.STAFF_INVITE: invitation.removeprefix("/staff/setup/"),
        Purpose.HELP_CASE: _token_in(WRITER, "/help/case/"),
        Purpose.ASSISTED_SIGN_IN: _token_in(ANN, "/assisted/"),
        Purpose.CONTACT_CONFIRM: _token_in(ANN_NEW, "/contact/confirm/"),
        Purpose.CONTACT_CANCEL: _token_in(ANN, "/contact/not-me/"),
    }
    assert set(tokens_by_purpose) == set(Purpose)  # a new purpose needs a live link here too
    return {p: tokens.load(p, token) for p, token in tokens_by_purpose.items()}


def _customer(address: str) -> Customer:
    (customer,) = find_by_email(address)
    return customer


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def _spent() -> tuple[int, ...]:
    return tuple(_count(m) for m in (Challenge, LoginSession, StaffSession, CaseMessage))


@pytest.mark.parametrize("route", list(Purpose), ids=str)
def test_a_token_opens_only_the_route_of_its_own_purpose(client, one_of_each, route):
    # Each token carries the very ids this route's own link carries: only the purpose differs.
    public_id, nonce = one_of_each[route]
    path = KINDS[route].path
    csrf = csrf_from(client.get("/link/new"))
    before = _spent()
    for purpose in Purpose:
        if purpose is route:
            continue
        token = tokens.issue(purpose, public_id, nonce)
        assert client.get(path + token).status_code == 404, purpose
        form = {"csrf_token": csrf, "body": "Hello.", "password": PASSWORD, "confirm": PASSWORD}
        assert client.post(path + token, data=form).status_code == 404, purpose
    assert _spent() == before  # no code sent, nobody signed in, nothing written
    assert client.get(path + tokens.issue(route, public_id, nonce)).status_code == 200


def test_an_invitation_lasts_an_hour_and_a_tampered_one_opens_nothing(app, clock):
    path = staff.invite(AGENT, "agent", actor="test").removeprefix(BASE_URL)
    visitor = app.test_client()
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    refused = visitor.get(tampered)
    assert refused.status_code == 404 and b"not valid" in refused.data
    clock.move(timedelta(hours=1) - timedelta(minutes=1))
    assert visitor.get(path).status_code == 200
    clock.move(timedelta(minutes=2))
    expired = visitor.get(path)
    # A leaked set-up link is soon worthless; the page says what to do next.
    assert expired.status_code == 404 and b"has expired" in expired.data
    assert b"Ask an admin for a new invitation" in expired.data


def test_an_assisted_sign_in_lasts_an_hour_and_a_tampered_one_opens_nothing(
    app, incident, write_csv, clock
):
    import_customers(incident, write_csv([customer_row(1, email=ANN, phone="")]), actor="test")
    staff.invite(AGENT, "agent", actor="test")
    agent_tools.confirm_identity(staff.by_email(AGENT), _customer(ANN), "Checked by phone")
    path = "/assisted/" + _token_in(ANN, "/assisted/")
    visitor = app.test_client()
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert visitor.get(tampered).status_code == 404
    clock.move(timedelta(minutes=59))
    page = visitor.get(path)
    assert page.status_code == 200
    clock.move(timedelta(minutes=2))
    assert visitor.get(path).status_code == 404
    refused = visitor.post(path, data={"csrf_token": csrf_from(page)})
    assert refused.status_code == 404 and _count(LoginSession) == 0


@pytest.mark.parametrize(
    ("purpose", "salt"),
    [
        (Purpose.NOTICE_LINK, "notice-link-v1"),
        (Purpose.HELP_CASE, "help-case-v1"),
        (Purpose.STAFF_INVITE, "staff-invite-v1"),
        (Purpose.ASSISTED_SIGN_IN, "assisted-signin-v1"),
    ],
    ids=str,
)
def test_links_mailed_before_the_table_existed_still_open(app, purpose, salt):
    # Letters in the post carry these: the salts and the format are fixed.
    mailed = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=salt).dumps(["id", "nonce"])
    assert tokens.load(purpose, mailed) == ("id", "nonce")


def test_a_dated_link_is_the_token_itsdangerous_itself_makes(app):
    """The worker's dated links reuse one signer per (keys, salt, date): each token must still be
    exactly what a fresh itsdangerous serializer makes, and open as any other."""
    issued_at = 1_700_000_000
    made = [
        tokens.link(Purpose.NOTICE_LINK, f"public{n}", f"nonce{n}", issued_at=issued_at)
        for n in range(3)
    ]
    prefix = app.config["BASE_URL"] + KINDS[Purpose.NOTICE_LINK].path
    plain = URLSafeTimedSerializer(
        app.config["SECRET_KEY"],
        salt=KINDS[Purpose.NOTICE_LINK].salt,
        signer=tokens._DatedSigner,
        signer_kwargs={"timestamp": issued_at},
    )
    assert made == [prefix + plain.dumps([f"public{n}", f"nonce{n}"]) for n in range(3)]
    assert tokens.signed_by_us(Purpose.NOTICE_LINK, made[1].removeprefix(prefix)) == (
        "public1",
        "nonce1",
    )
