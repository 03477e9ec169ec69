"""'Send me a new link': the same answer, at the same speed, whoever asks."""

from __future__ import annotations

import re

import pytest
from limits import parse
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import AuditEvent
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web import limits
from tests.conftest import customer_row
from tests.customer_flow import csrf_from, link_path, messages_to, run_jobs

KNOWN = "ann@example.com"
UNKNOWN = "nobody.here@example.com"


@pytest.fixture
def notified(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1, email=KNOWN, phone="")]), actor="test")
    queue_notices(incident, actor="test")


def ask(client, address: str, **kwargs):
    token = csrf_from(client.get("/link/new", **kwargs))
    return client.post("/link/new", data={"csrf_token": token, "email": address}, **kwargs)


def comparable(response) -> tuple:
    """Status, body and headers, less what differs on every response by design."""
    headers = sorted(
        (k, v)
        for k, v in response.headers.items()
        if k not in ("X-Request-ID", "Content-Security-Policy", "Set-Cookie")
    )
    return response.status_code, response.data, tuple(headers)


def test_known_and_unknown_addresses_get_the_same_answer(client, app, notified):
    old_link = link_path(KNOWN)
    known = ask(client, KNOWN)
    unknown = ask(client, UNKNOWN)

    assert comparable(known) == comparable(unknown)
    assert known.headers["Location"] == "/link/sent"
    page = client.get("/link/sent").data
    assert b"If that address belongs to someone we wrote to" in page

    run_jobs(app)
    assert messages_to(UNKNOWN) == []
    new_mail = [m for m in messages_to(KNOWN) if "new link" in m.row.subject]
    assert len(new_mail) == 1
    new_link = link_path(KNOWN)
    assert new_link != old_link
    assert b"This link has been replaced" in client.get(old_link).data  # the old nonce is gone
    assert client.get(new_link).status_code == 200
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action.in_(["link.requested", "link.reissued"]))
        .order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == ["link.requested", "link.requested", "link.reissued"]
    assert all(KNOWN not in e.details and "ann" not in e.details for e in events)


def test_bad_addresses_get_a_clear_message_and_change_nothing(client, app, notified):
    for bad in ("", "not-an-address", "a@b", "x" * 300 + "@example.com"):
        response = ask(client, bad)
        assert response.status_code == 422
        assert b"Enter" in response.data
    run_jobs(app)
    assert [m for m in messages_to(KNOWN) if "new link" in m.row.subject] == []


def test_many_requests_for_one_address_send_only_a_few_links(client, app, notified):
    answers = set()
    # As often as one address may be asked for, each time from another network, so no web
    # limit is what stops the mail: the worker's own count is.
    for i in range(parse(limits.NEW_LINK_PER_EMAIL).amount):
        response = ask(client, KNOWN, environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"})
        answers.add(comparable(response))
    run_jobs(app)
    assert len(answers) == 1
    mailed = [m for m in messages_to(KNOWN) if "new link" in m.row.subject]
    assert len(mailed) == app.config["NEW_LINKS_PER_HOUR"] == 3


def test_one_client_asking_too_often_is_slowed_down(client, notified):
    allowed = parse(limits.NEW_LINK_PER_NETWORK).amount
    token = csrf_from(client.get("/link/new"))
    statuses = [
        client.post(
            "/link/new", data={"csrf_token": token, "email": f"person{i}@example.com"}
        ).status_code
        for i in range(allowed + 1)
    ]
    assert statuses[:allowed] == [302] * allowed
    assert statuses[allowed] == 429


def statements(do) -> list[str]:
    """The SQL statements run while `do()` runs (their text, not their parameters)."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        do()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


def test_known_and_unknown_addresses_cost_the_request_the_same_work(client, notified):
    # The same speed by construction, not by measurement (bench/new_link_bench.py measures):
    # the request never looks the address up, the worker does, so both run the same statements.
    token = csrf_from(client.get("/link/new"))

    def ask_for(address: str):
        return lambda: client.post("/link/new", data={"csrf_token": token, "email": address})

    ask_for(UNKNOWN)()  # warm up: the first request of a client loads what later ones reuse
    known, unknown = statements(ask_for(KNOWN)), statements(ask_for(UNKNOWN))
    assert known and known == unknown
    assert not any(re.search(r"\bFROM customer\b", s) for s in known)


def test_the_new_link_page_has_the_form(client):
    page = client.get("/link/new").get_data(as_text=True)
    assert re.search(r'<input[^>]*autocomplete="email"', page)
