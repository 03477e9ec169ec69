"""Every page costs the same number of queries with ten affected people as with ten thousand.

Notice day is a herd: a page whose queries grow with the data (a lazy load in a loop, a list
without a limit) is fine at ten customers and falls over at a million. Each page is read twice
as a person would read it, once in a small world and once after 9,990 more people, their
notices and their cases have arrived; its count of statements must not change.
"""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import event, select, text

from portal import clock as portal_clock
from portal.extensions import db
from portal.models import Case, Customer, Notice
from portal.models.case import CaseTopic
from portal.services import cases, tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import HEADER, customer_row, pg_url
from tests.customer_flow import sign_in
from tests.staff_flow import set_up

SMALL = 10
BIG = 10_000
ANN = "person1@example.com"


def _write(path, first: int, last: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for n in range(first, last + 1):
            writer.writerow(customer_row(n, phone="", data_classes="ssn:1234;full_name"))


def _grow(incident, tmp_path) -> None:
    """9,990 more people, each with a notice, and cases from a hundred of them.

    The notices of the crowd go in with one INSERT ... SELECT: what is measured here is the
    pages, not the queueing (which has its own tests and benchmark).
    """
    path = tmp_path / "crowd.csv"
    _write(path, SMALL + 1, BIG)
    import_customers(incident, path, actor="test")
    db.session.execute(
        text(
            "INSERT INTO notice (public_id, customer_id, incident_id, reference_code, link_nonce,"
            " queued_at, created_at)"
            " SELECT 'crowd' || customer.id, customer.id, :incident, 'CROWD' || customer.id,"
            " 'nonce', :now, :now FROM customer"
            " WHERE NOT EXISTS (SELECT 1 FROM notice WHERE notice.customer_id = customer.id)"
        ),
        {"incident": incident.id, "now": portal_clock.now()},
    )
    crowd = db.session.scalars(
        select(Customer).where(Customer.external_id.like("C-%")).order_by(Customer.id).limit(100)
    )
    for customer in crowd:
        cases.open_case(customer, CaseTopic.MY_DATA, "What does this mean for me?")
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(Notice)) == BIG


def _count(client, path: str) -> tuple[int, int]:
    """(status, statements) of a second read of the page: the first settles one-off writes
    such as a session's last-seen time."""
    client.get(path)
    statements: list[str] = []

    def counted(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", counted)
    try:
        response = client.get(path)
    finally:
        event.remove(db.engine, "before_cursor_execute", counted)
    return response.status_code, len(statements)


def _counts(pages: dict[str, tuple[object, str]]) -> dict[str, tuple[int, int]]:
    return {name: _count(client, path) for name, (client, path) in pages.items()}


@pytest.fixture
def small_world(app, incident, tmp_path, clock):
    """Ten notified people, one of them signed in with a case of her own; an agent and an
    admin signed in."""
    path = tmp_path / "first.csv"
    _write(path, 1, SMALL)
    import_customers(incident, path, actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    customer = app.test_client()
    sign_in(customer, ANN)
    ann = db.session.scalars(select(Customer).where(Customer.external_id == "C-00001")).one()
    case = cases.open_case(ann, CaseTopic.MY_DATA, "Is my card at risk?")
    notice = db.session.scalars(select(Notice).where(Notice.customer_id == ann.id)).one()
    link = tokens.link(tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce)
    db.session.commit()
    agent, admin = app.test_client(), app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    set_up(app, admin, "boss@example.com", "admin", clock)
    return {
        "customer": customer,
        "agent": agent,
        "admin": admin,
        "stranger": app.test_client(),
        "case": case.public_id,
        "ann": ann.public_id,
        "link": link.split("example.test", 1)[1],
    }


def _pages(world, incident) -> dict[str, tuple[object, str]]:
    c, agent, admin, stranger = (world[k] for k in ("customer", "agent", "admin", "stranger"))
    slug = incident.slug
    return {
        "front page": (stranger, "/"),
        "incident page": (stranger, f"/incidents/{slug}"),
        "link page": (stranger, world["link"]),
        "start": (stranger, "/start"),
        "new link": (stranger, "/link/new"),
        "help": (stranger, "/help"),
        "dashboard": (c, "/me"),
        "plan": (c, "/me/plan"),
        "protection": (c, "/me/protection"),
        "sessions": (c, "/me/sessions"),
        "my cases": (c, "/me/cases"),
        "my case": (c, f"/me/cases/{world['case']}"),
        "password": (c, "/me/password"),
        "authenticator": (c, "/me/authenticator"),
        "queue": (agent, "/staff/cases"),
        "case": (agent, f"/staff/cases/{world['case']}"),
        "find a customer": (agent, "/staff/customers?q=person1%40example.com"),
        "customer record": (agent, f"/staff/customers/{world['ann']}"),
        "contact changes": (agent, "/staff/contact-changes"),
        "staff sessions": (agent, "/staff/sessions"),
        "console": (admin, "/admin/"),
        "incident console": (admin, f"/admin/incidents/{slug}"),
        "campaign": (admin, f"/admin/incidents/{slug}/campaign"),
        "campaign confirm": (admin, f"/admin/incidents/{slug}/campaign/confirm"),
        "campaign preview": (
            admin,
            f"/admin/incidents/{slug}/campaign/preview?locale=en&region=US-CA",
        ),
        "import": (admin, f"/admin/incidents/{slug}/import"),
        "metrics": (admin, "/admin/metrics"),
        "metrics CSV": (admin, "/admin/metrics.csv"),
        "obligations": (admin, "/admin/obligations"),
        "staff": (admin, "/admin/staff"),
        "audit log": (admin, "/admin/audit"),
    }


def test_every_page_costs_the_same_queries_with_ten_thousand_people_as_with_ten(
    app, incident, small_world, tmp_path
):
    pages = _pages(small_world, incident)
    small = _counts(pages)
    assert {name: status for name, (status, _n) in small.items() if status != 200} == {}

    _grow(incident, tmp_path)
    big = _counts(pages)

    grown = {
        name: f"{small[name][1]} -> {big[name][1]} statements"
        for name in pages
        if big[name] != small[name]
    }
    assert grown == {}, f"pages whose queries grew with the data: {grown}"
    assert db.session.scalar(select(db.func.count()).select_from(Case)) == 101


def _scanned(plan: dict) -> set[str]:
    """The tables a plan reads whole (Seq Scan nodes), at any depth."""
    found = {plan["Relation Name"]} if plan.get("Node Type") == "Seq Scan" else set()
    for child in plan.get("Plans", []):
        found |= _scanned(child)
    return found


@pytest.mark.skipif(
    not pg_url(), reason="EXPLAIN plans are PostgreSQL's (PORTAL_TEST_DATABASE_URL)"
)
def test_the_herds_pages_read_no_large_table_whole(app, incident, small_world, tmp_path):
    """With ten thousand people and fresh statistics, the pages of the customer's way in (link,
    dashboard, plan and the rest of their own pages) plan no sequential scan of a large table
    (one of 5,000 rows or more: a table of a few rows is rightly read whole)."""
    _grow(incident, tmp_path)
    # The crowd signed in too, and ticked steps of their plans: those tables are large as well.
    db.session.execute(
        text(
            "INSERT INTO login_session (token_digest, customer_id, created_at, last_seen_at,"
            " verified_at, user_agent) SELECT sha256(customer.id::text::bytea), customer.id,"
            " now(), now(), now(), '' FROM customer WHERE customer.external_id <> 'C-00001';"
            "INSERT INTO guidance_progress (customer_id, step_id, done_at)"
            " SELECT customer.id, 'freeze-credit', now() FROM customer"
            " WHERE customer.external_id <> 'C-00001'"
        )
    )
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    herd = {
        name: entry
        for name, entry in _pages(small_world, incident).items()
        if entry[0] is small_world["customer"] or name == "link page"
    }
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    for client, path in herd.values():
        client.get(path)
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        for client, path in herd.values():
            assert client.get(path).status_code == 200, path
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(statements) > len(herd)  # the pages were read, with their queries

    connection = db.session.connection()
    large = set(
        connection.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples >= 5000"
        ).scalars()
    )
    assert {"customer", "exposure", "notice", "login_session", "guidance_progress"} <= large
    scans = {}
    for statement, parameters in statements:
        plan = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        tables = _scanned(plan[0]["Plan"]) & large
        if tables:
            scans[" ".join(statement.split())[:160]] = sorted(tables)
    db.session.rollback()
    assert scans == {}, f"statements that read a large table whole: {scans}"
