"""One unit of work: the edge commits once (a request, a command, a worker iteration), services
never do; an error of ours undoes everything a request did, and reading a page changes nothing
but what the reading is for."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest
from flask_sqlalchemy.session import Session
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from portal import ROOT, unit_of_work
from portal import clock as portal_clock
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Challenge,
    Customer,
    Incident,
    LoginSession,
    RecoveryCode,
    StaffMember,
    StaffSession,
)
from portal.services import incidents
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web.access import public
from tests.conftest import BASE_URL, INCIDENT, base_env, customer_row
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    sign_in,
    start_from_link,
    submit_code,
)
from tests.staff_flow import member, reauth, set_up

ANN = "ann@example.com"
BOB = "bob@example.com"
AGENT = "agent@example.com"
ADMIN = "boss@example.com"
GOOD = "correct horse battery staple"

# --- nothing commits but the unit of work ---

OWNER = "portal/unit_of_work.py"


def test_nothing_in_the_portal_commits_but_the_unit_of_work():
    found = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name == OWNER:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"\bcommit\s*\(", line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "commit only through portal.unit_of_work:\n" + "\n".join(found)


# --- helpers: what another connection sees, that is, what was committed ---


def committed(statement) -> list:
    with db.engine.connect() as connection:
        return connection.execute(statement).all()


def committed_actions() -> list[str]:
    return [a for (a,) in committed(select(AuditEvent.action).order_by(AuditEvent.id))]


def snapshot() -> dict[str, dict[tuple, dict]]:
    """Every committed row of every table in the metadata (so every count and every
    updated_at), by primary key."""
    with db.engine.connect() as connection:
        return {
            table.name: {
                tuple(row[c.name] for c in table.primary_key): dict(row)
                for row in connection.execute(table.select()).mappings()
            }
            for table in db.metadata.sorted_tables
        }


def changes(before: dict, after: dict) -> set[tuple[str, str]]:
    """(table, column) for each changed value; (table, "+action") for each audit event added,
    (table, "+row") or (table, "-row") for any other row added or removed."""
    found = set()
    for table, rows in after.items():
        old = before[table]
        for key, row in rows.items():
            if key not in old:
                found.add((table, "+" + (row["action"] if table == "audit_event" else "row")))
            else:
                found |= {
                    (table, column) for column, value in row.items() if old[key][column] != value
                }
        found |= {(table, "-row") for key in old if key not in rows}
    return found


def reading(client, path: str) -> set[tuple[str, str]]:
    """What a GET of path changed in the database."""
    before = snapshot()
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return changes(before, snapshot())


def seen_minutes_ago(model, minutes: int) -> None:
    """Sessions last seen a while ago (but within the idle limit): the next page notes it."""
    db.session.execute(
        update(model).values(last_seen_at=portal_clock.now() - timedelta(minutes=minutes))
    )
    unit_of_work.commit()


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [
        customer_row(1, full_name="Ann Example", email=ANN, phone="", data_classes="ssn:6789"),
        customer_row(2, full_name="Bob Example", email=BOB, phone="", data_classes="password"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    unit_of_work.commit()


# --- acceptance 2: GET requests write nothing unless the write is their point ---


def test_a_customers_pages_and_the_link_page_change_nothing_but_what_they_are_for(
    app, client, notified
):
    sign_in(client, ANN)

    assert reading(client, "/me") == set()
    seen_minutes_ago(LoginSession, 2)
    # The idle timeout counts from the last page seen.
    assert reading(client, "/me") == {("login_session", "last_seen_at")}
    # The first view of the plan is a figure of the response team's funnel.
    assert reading(client, "/me/plan") == {("customer", "plan_viewed_at")}
    assert reading(client, "/me/plan") == set()
    # Whoever opens a personal link is recorded; the first opening is a figure of the funnel.
    bobs_link = link_path(BOB)
    assert reading(client, bobs_link) == {("notice", "opened_at"), ("audit_event", "+link.opened")}
    assert reading(client, bobs_link) == {("audit_event", "+link.opened")}


def test_an_agent_reading_a_case_changes_nothing_but_the_record_of_the_look(
    app, client, notified, clock
):
    sign_in(client, ANN)
    page = client.get("/me/cases")
    opened = client.post(
        "/me/cases",
        data={"csrf_token": csrf_from(page), "topic": "my_data", "body": "What did you lose?"},
    )
    case_path = opened.headers["Location"].replace("/me/cases/", "/staff/cases/")
    agent = app.test_client()
    set_up(app, agent, AGENT, "agent", clock)

    # Every staff look at a customer's data is recorded.
    assert reading(agent, case_path) == {("audit_event", "+case.viewed")}
    seen_minutes_ago(StaffSession, 2)
    assert reading(agent, case_path) == {
        ("audit_event", "+case.viewed"),
        ("staff_session", "last_seen_at"),  # the idle timeout counts from here
    }


def _app_with_a_page(make_app, env: dict, view, methods=("GET",)):
    app = make_app(env)
    app.add_url_rule("/page", "page", public(view), methods=list(methods))
    with app.app_context():
        incidents.create_incident(**INCIDENT, actor="test")
        unit_of_work.commit()
    return app


def _retitle():
    db.session.scalars(select(Incident)).one().title = "Changed by a page view"
    db.session.flush()
    return "shown"


def _title(app) -> str:
    with app.app_context():
        return committed(select(Incident.title))[0][0]


def test_a_get_that_writes_without_saying_so_fails_in_tests(database_url, make_app):
    app = _app_with_a_page(make_app, base_env(database_url), _retitle)
    with pytest.raises(unit_of_work.UndeclaredWrite, match=r"incident\.title"):
        app.test_client().get("/page")
    assert _title(app) == INCIDENT["title"]


def test_a_get_that_writes_without_saying_so_is_undone_in_production(
    database_url, make_app, caplog
):
    app = _app_with_a_page(make_app, base_env(database_url, PORTAL_ENV="production"), _retitle)
    response = app.test_client().get("/page", base_url=BASE_URL)
    assert response.status_code == 200 and response.data == b"shown"
    assert _title(app) == INCIDENT["title"]
    assert "rolled back: GET page wrote incident.title without declaring it" in caplog.text


def test_a_write_declared_as_the_point_of_a_get_is_kept(database_url, make_app):
    def retitle():
        unit_of_work.write_is_the_point(Incident.title)
        return _retitle()

    app = _app_with_a_page(make_app, base_env(database_url), retitle)
    assert app.test_client().get("/page").status_code == 200
    assert _title(app) == "Changed by a page view"


def test_a_commit_that_fails_is_an_error_page_not_a_done(database_url, make_app, monkeypatch):
    def retitle():
        unit_of_work.write_is_the_point(Incident.title)
        return _retitle()

    app = _app_with_a_page(make_app, base_env(database_url, PORTAL_ENV="production"), retitle)

    def refuse(self):
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorname = "SQLITE_FULL"
        raise OperationalError("COMMIT", {}, full)

    monkeypatch.setattr(Session, "commit", refuse)
    response = app.test_client().get("/page", base_url=BASE_URL)
    monkeypatch.undo()
    # The database refused for a reason of its own (PEP 249's OperationalError): "try again
    # later" (503), and never the page that says it was done.
    assert response.status_code == 503 and b"shown" not in response.data
    assert _title(app) == INCIDENT["title"]


# --- the edge commits what a request did, also when it answers "no" on purpose ---


def test_a_wrong_code_counts_its_try_although_the_answer_is_an_error(client, notified):
    start_from_link(client, link_path(ANN))
    right = code_sent_to(ANN)
    response = submit_code(client, "000000" if right != "000000" else "111111")
    assert response.status_code == 422
    assert committed(select(Challenge.tries)) == [(1,)]
    assert "code.failed" in committed_actions()


# --- composite operations are one transaction: the last step failing leaves nothing ---


def _break(monkeypatch, target: str):
    def fail(*_args, **_kwargs):
        raise RuntimeError("the last step failed")

    monkeypatch.setattr(target, fail)


def test_a_password_change_whose_last_step_fails_changes_nothing(
    app, client, notified, monkeypatch
):
    app.config["WEBHOOK_URL"] = "https://hooks.example.test/portal"
    other = app.test_client()
    sign_in(other, ANN)
    sign_in(client, ANN)
    page = client.get("/me/password")
    before = snapshot()
    _break(monkeypatch, "portal.services.passwords.sessions.open_session")

    response = client.post(
        "/me/password", data={"csrf_token": csrf_from(page), "password": GOOD, "confirm": GOOD}
    )

    assert response.status_code == 500
    # Not the new password, nor the other sessions ended, nor the audit event, the email or
    # the webhook of the earlier steps.
    assert changes(before, snapshot()) == set()
    monkeypatch.undo()
    assert other.get("/me").status_code == 200


def test_a_step_up_whose_last_step_fails_leaves_the_code_unspent_and_the_session_alive(
    app, client, notified, monkeypatch
):
    sign_in(client, ANN)
    page = client.get("/me")
    client.post("/me/confirm", data={"csrf_token": csrf_from(page), "next": "/me/password"})
    page = client.get("/verify")
    before = snapshot()
    _break(monkeypatch, "portal.web.customer.way_in.sessions.open_session")

    response = client.post(
        "/verify", data={"csrf_token": csrf_from(page), "code": code_sent_to(ANN)}
    )

    assert response.status_code == 500
    # The code unspent, the session it came from not ended, no new session, nothing audited.
    assert changes(before, snapshot()) == set()


def test_an_mfa_reset_whose_last_step_fails_changes_nothing(app, clock, monkeypatch):
    agent, admin = app.test_client(), app.test_client()
    set_up(app, agent, AGENT, "agent", clock)
    set_up(app, admin, ADMIN, "admin", clock)
    target = member(AGENT)
    reauth(admin, ADMIN, clock, "/admin/staff")
    page = admin.get("/admin/staff")
    before = snapshot()
    _break(monkeypatch, "portal.services.staff.invite")

    response = admin.post(
        f"/admin/staff/{target.public_id}/reset-mfa", data={"csrf_token": csrf_from(page)}
    )

    assert response.status_code == 500
    # The authenticator, the recovery codes, the sessions, the password: all as they were.
    assert changes(before, snapshot()) == set()
    assert committed(select(RecoveryCode.id).where(RecoveryCode.staff_id == target.id))
    assert committed(select(StaffMember.totp_sealed).where(StaffMember.id == target.id))[0][0]
    monkeypatch.undo()
    assert agent.get("/staff/cases").status_code == 200


def test_a_customer_sign_in_that_fails_at_its_last_step_opens_no_session(
    app, client, notified, monkeypatch
):
    start_from_link(client, link_path(ANN))
    page = client.get("/verify")
    _break(monkeypatch, "portal.web.customer.way_in.sessions.open_session")
    response = client.post(
        "/verify", data={"csrf_token": csrf_from(page), "code": code_sent_to(ANN)}
    )
    assert response.status_code == 500
    assert committed(select(LoginSession.id)) == []
    assert committed(select(Challenge.consumed_at)) == [(None,)]
    assert "customer.verified" not in committed_actions()


# --- commands: one unit each ---


def test_a_command_that_refuses_keeps_the_record_of_the_refusal(runner, incident, write_csv):
    unit_of_work.commit()
    bad = write_csv([customer_row(1, email="not an address")])
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(bad)])
    assert result.exit_code == 1
    assert committed(select(Customer.id)) == []
    assert "customers.import_rejected" in committed_actions()


def test_a_command_that_breaks_keeps_nothing(runner, monkeypatch):
    def fail(*_args, **_kwargs):
        raise RuntimeError("the audit trail is unreachable")

    monkeypatch.setattr("portal.services.incidents.audit.record", fail)
    result = runner.invoke(
        args=["incident", "create", "--slug", "s-1", "--title", "T", "--discovered", "2026-10-09"]
    )
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert committed(select(Incident.id)) == []


def test_a_batch_is_never_committed_inside_a_request(app):
    with app.test_request_context("/"), pytest.raises(RuntimeError, match="once, at its end"):
        unit_of_work.checkpoint()
