"""Limits that stop a script without punishing the neighbours who share its address."""

from __future__ import annotations

import re

import pytest
from limits import parse
from sqlalchemy import select

from portal.extensions import db
from portal.models import Case, Customer, Enrollment, Notice
from portal.services import tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web import limits
from tests.conftest import customer_row
from tests.customer_flow import csrf_from, link_path, messages_to, sign_in, start_from_link
from tests.test_protection import load_codes, offer_cli

ANN = "ann@example.com"
BOB = "bob@example.com"
OFFICE = {"REMOTE_ADDR": "198.51.100.7"}  # one address that many people share
GOOD_PASSWORD = "correct horse battery staple"


def allowance(limit: str) -> int:
    return parse(limit).amount


def elsewhere(n: int) -> dict:
    """The n-th of many distinct client addresses."""
    return {"REMOTE_ADDR": f"203.0.{n // 250}.{n % 250 + 1}"}


def is_rate_limited(response) -> bool:
    return response.status_code == 429


def is_the_limit_page(response) -> bool:
    """The rate limit's answer, not the service's own refusal (also a 429) to send more codes."""
    return response.status_code == 429 and "Retry-After" in response.headers


@pytest.fixture
def two_customers(app, incident, write_csv):
    rows = [
        customer_row(1, email=ANN, phone="", data_classes="ssn:1111;password"),
        customer_row(2, email=BOB, phone="", data_classes="ssn:2222;password"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")


@pytest.fixture
def neighbours(app, runner, two_customers, tmp_path):
    """Ann and Bob, signed in, both behind the same address, with an offer to enroll in."""
    offer_cli(runner)
    load_codes(runner, tmp_path, ["CODE-0001-XYZ", "CODE-0002-XYZ"])
    ann = app.test_client()
    bob = app.test_client()
    ann.environ_base.update(OFFICE)
    bob.environ_base.update(OFFICE)
    sign_in(ann, ANN)
    sign_in(bob, BOB)
    return ann, bob


def _change_password(client, *, valid: bool):
    token = csrf_from(client.get("/me/password"))
    confirm = GOOD_PASSWORD if valid else "something else entirely"
    return client.post(
        "/me/password",
        data={"csrf_token": token, "password": GOOD_PASSWORD, "confirm": confirm},
    )


def _ask_question(client, *, valid: bool):
    token = csrf_from(client.get("/me/cases"))
    body = "Someone opened a card in my name." if valid else ""
    return client.post(
        "/me/cases", data={"csrf_token": token, "topic": "identity_theft", "body": body}
    )


def _enroll(client, *, valid: bool):
    data = {"csrf_token": csrf_from(client.get("/me/protection"))}
    if valid:
        data["consent"] = "y"
    return client.post("/me/protection/1", data=data)


def _done(action: str, email: str) -> bool:
    db.session.expire_all()
    customer = next(c for c in db.session.scalars(select(Customer)) if c.email == email)
    if action == "password":
        return customer.password_changed_at is not None
    model = Case if action == "question" else Enrollment
    return db.session.scalar(select(model).where(model.customer_id == customer.id)) is not None


@pytest.mark.parametrize(
    ("action", "act", "limit"),
    [
        ("password", _change_password, limits.PASSWORD_PER_CUSTOMER),
        ("question", _ask_question, limits.QUESTION_PER_CUSTOMER),
        ("enrollment", _enroll, limits.ENROLL_PER_CUSTOMER),
    ],
)
def test_two_customers_behind_one_address_each_have_their_own_allowance(
    neighbours, action, act, limit
):
    ann, bob = neighbours
    for _ in range(allowance(limit)):
        assert not is_rate_limited(act(ann, valid=False))
    assert is_rate_limited(act(ann, valid=False))  # Ann has used up her own allowance
    # Bob, on the same address, is not held back by Ann.
    response = act(bob, valid=True)
    assert response.status_code == 302, response.status_code
    assert _done(action, BOB)
    assert not _done(action, ANN)


@pytest.fixture
def two_hundred_notices(app, incident, write_csv) -> list[str]:
    rows = [customer_row(n, phone="", data_classes="email_address") for n in range(200)]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    notices = db.session.scalars(select(Notice).order_by(Notice.id)).all()
    return [
        tokens.link(tokens.Purpose.NOTICE_LINK, n.public_id, n.link_nonce).removeprefix(
            app.config["BASE_URL"]
        )
        for n in notices
    ]


def test_two_hundred_people_behind_one_address_can_all_use_their_links(app, two_hundred_notices):
    carrier_nat = {"REMOTE_ADDR": "100.64.12.34"}
    answers = []
    for path in two_hundred_notices:
        person = app.test_client()  # each their own browser, all behind the carrier's address
        page = person.get(path, environ_base=carrier_nat)
        answers.append(
            person.post(path, data={"csrf_token": csrf_from(page)}, environ_base=carrier_nat)
        )
    assert [a.status_code for a in answers] == [302] * 200
    assert {a.headers["Location"] for a in answers} == {"/verify"}


def test_one_notice_link_pressed_from_many_addresses_is_stopped(app, client, two_customers):
    path = link_path(ANN)
    token = csrf_from(client.get(path))
    allowed = allowance(limits.LINK_PER_NOTICE)
    answers = [
        client.post(path, data={"csrf_token": token}, environ_base=elsewhere(n))
        for n in range(allowed + 1)
    ]
    assert not any(is_the_limit_page(a) for a in answers[:allowed])
    assert is_the_limit_page(answers[allowed])
    codes = [m for m in messages_to(ANN) if "code" in m.row.subject.lower()]
    assert len(codes) <= app.config["CHALLENGES_PER_HOUR"]
    # Bob's link, from the last of those addresses, still works.
    bob = app.test_client()
    bob.environ_base.update(elsewhere(allowed))
    assert start_from_link(bob, link_path(BOB)).headers["Location"] == "/verify"


def test_one_code_typed_from_many_addresses_is_stopped(client, two_customers):
    start_from_link(client, link_path(ANN))
    token = csrf_from(client.get("/verify"))
    allowed = allowance(limits.VERIFY_PER_CHALLENGE)
    # Letters are not a guess at the code, so the code's own count of tries never sees them.
    answers = [
        client.post(
            "/verify", data={"csrf_token": token, "code": "abcdef"}, environ_base=elsewhere(n)
        )
        for n in range(allowed + 1)
    ]
    assert [a.status_code for a in answers[:allowed]] == [422] * allowed
    assert is_rate_limited(answers[allowed])


def test_one_email_asked_for_from_many_addresses_is_stopped(client, two_customers):
    token = csrf_from(client.get("/link/new"))
    allowed = allowance(limits.NEW_LINK_PER_EMAIL)
    answers = [
        client.post(
            "/link/new", data={"csrf_token": token, "email": ANN}, environ_base=elsewhere(n)
        )
        for n in range(allowed + 1)
    ]
    assert [a.status_code for a in answers[:allowed]] == [302] * allowed
    assert is_rate_limited(answers[allowed])
    other = client.post(
        "/link/new", data={"csrf_token": token, "email": BOB}, environ_base=elsewhere(allowed)
    )
    assert other.status_code == 302


def test_addresses_of_one_ipv6_network_share_one_allowance(client, two_customers):
    token = csrf_from(client.get("/link/new"))
    allowed = allowance(limits.NEW_LINK_PER_NETWORK)

    def ask(n: int, network: str):
        return client.post(
            "/link/new",
            data={"csrf_token": token, "email": f"person{n}@example.com"},
            environ_base={"REMOTE_ADDR": f"{network}:{n:x}::1"},
        )

    # One subscriber's /64 holds more addresses than anyone could count one by one.
    answers = [ask(n, "2001:db8:1:2") for n in range(allowed + 1)]
    assert [a.status_code for a in answers[:allowed]] == [302] * allowed
    assert is_rate_limited(answers[allowed])
    assert ask(allowed + 1, "2001:db8:1:3").status_code == 302  # the next network is not held


def _exhaust_sign_in(client, **kwargs):
    """Try one email address with wrong codes until its sign-in limit is used up."""
    token = csrf_from(client.get("/signin"))
    data = {"csrf_token": token, "email": ANN, "code": "000000"}
    for _ in range(allowance(limits.SIGNIN_PER_EMAIL_AND_NETWORK)):
        assert client.post("/signin", data=data).status_code == 422
    return client.post("/signin", data=data, **kwargs)


def test_the_limit_page_says_when_to_try_again_and_how_to_reach_a_person(client, two_customers):
    response = _exhaust_sign_in(client)
    assert is_the_limit_page(response)
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    page = response.get_data(as_text=True)
    assert "Please wait a little" in page
    assert re.search(r"try again in about \d+ minutes|try again in about 1 hour", page)
    assert 'href="/help"' in page
    assert "<html" in page  # a whole page for a plain request


def test_the_limit_page_is_in_the_visitors_language(client, two_customers):
    client.post("/language", data={"csrf_token": csrf_from(client.get("/")), "lang": "es"})
    response = _exhaust_sign_in(client)
    assert is_rate_limited(response)
    page = response.get_data(as_text=True)
    assert '<html lang="es">' in page
    assert re.search(r"\d+ minutos|1 hora", page)  # how long to wait, in their words


def test_a_stranger_who_knows_an_email_cannot_lock_its_owner_out(client, two_customers):
    token = csrf_from(client.get("/link/new"))
    stranger = {"REMOTE_ADDR": "192.0.2.66"}
    for _ in range(allowance(limits.NEW_LINK_PER_EMAIL_AND_NETWORK) + 3):
        client.post("/link/new", data={"csrf_token": token, "email": ANN}, environ_base=stranger)
    # The owner, on their own network, still gets their link.
    own = client.post(
        "/link/new",
        data={"csrf_token": token, "email": ANN},
        environ_base={"REMOTE_ADDR": "198.51.100.200"},
    )
    assert own.status_code == 302


def test_one_phone_number_in_any_spelling_is_one_contact_for_help(client):
    token = csrf_from(client.get("/help"))
    spellings = ["+14155550102", "+1 415 555 0102", "+1-415-555-0102", "0014155550102"]
    answers = [
        client.post(
            "/help",
            data={
                "csrf_token": token,
                "topic": "cannot_verify",
                "name": "Ann Example",
                "contact": spelling,
                "body": "The code goes to my old phone.",
            },
        )
        for spelling in spellings
    ]
    allowed = allowance(limits.HELP_PER_CONTACT_AND_NETWORK)
    assert [a.status_code for a in answers[:allowed]] == [302] * allowed
    assert is_rate_limited(answers[allowed])


def test_a_reference_code_is_never_kept_in_clear_by_the_limits(app, client, two_customers):
    import redis

    from tests.conftest import REDIS_URL

    code = db.session.scalars(select(Notice.reference_code)).first()
    token = csrf_from(client.get("/start"))
    client.post("/start", data={"csrf_token": token, "reference": code})
    keys = redis.Redis.from_url(REDIS_URL).keys("*")
    assert keys, "the limits keep their counts in Redis"
    assert not [k for k in keys if code.encode() in k.upper()]


# --- staff ---


def _staff_login(client, email: str, password: str, **kwargs):
    token = csrf_from(client.get("/staff/login", **kwargs))
    return client.post(
        "/staff/login", data={"csrf_token": token, "email": email, "password": password}, **kwargs
    )


def test_an_office_of_agents_behind_one_address_is_not_held_back(app):
    # More agents than the old per-address limit allowed, each signing in at shift start
    # (here with a wrong password: the address limit counts every attempt alike).
    answers = [
        _staff_login(app.test_client(), f"agent{n}@example.com", "wrong", environ_base=OFFICE)
        for n in range(25)
    ]
    assert [a.status_code for a in answers] == [422] * 25


def test_one_staff_account_tried_from_many_addresses_is_stopped(app):
    allowed = allowance(limits.STAFF_LOGIN_PER_ACCOUNT)
    client = app.test_client()
    answers = [
        _staff_login(client, "admin@example.com", "wrong", environ_base=elsewhere(n))
        for n in range(allowed + 1)
    ]
    assert [a.status_code for a in answers[:allowed]] == [422] * allowed
    assert is_rate_limited(answers[allowed])
    assert 'href="/help"' not in answers[allowed].get_data(as_text=True)  # not the customers' form
