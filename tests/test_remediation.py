"""Acceptance 2 and 3 of issue 17 for the playbook's side: a remediation action marked public
reaches the customers' "What we are doing" in their language only once legal has approved its
exact text (and a change hides it again); the after-action report of the demo incident lists
every approval with its approver and time, on the page and in the PDF."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Incident, RemediationAction
from portal.services import approvals, investigation
from portal.services.demo import load_demo
from tests.customer_flow import csrf_from, sign_in
from tests.staff_flow import member, set_up

EN = "We now require hardware security keys for all staff"
ES = "Ahora exigimos llaves de seguridad físicas a todo el personal"
WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC)
URL = "/admin/incidents/acme-2026/investigation"


@pytest.fixture
def demo(app, clock):
    clock.move_to(WHEN)
    load_demo(actor="test")
    db.session.commit()
    return db.session.scalar(select(Incident).where(Incident.slug == "acme-2026"))


@pytest.fixture
def team(app, demo, clock):
    """A security investigator, a lawyer and an admin, each signed in in their own browser."""
    clients = {}
    for role in ("security", "legal", "admin"):
        clients[role] = app.test_client()
        set_up(app, clients[role], f"{role}@example.com", role, clock)
    return clients


def _fields(prefix: str, **values) -> dict:
    defaults = {
        "title": "Hardware security keys for every staff account",
        "owner": "security",
        "due_on": "2026-11-15",
        "done_on": "2026-11-12",
        "public": "y",
        "public_text": EN,
        "public_text_es": ES,
    }
    return {f"{prefix}-{k}": v for k, v in (defaults | values).items() if v is not None}


def _add_action(client) -> RemediationAction:
    page = client.get(URL)
    response = client.post(
        f"{URL}/actions", data={"new-csrf_token": csrf_from(page), **_fields("new")}
    )
    assert response.status_code == 302
    return db.session.scalars(select(RemediationAction)).one()


def _press(client, action: RemediationAction, what: str):
    page = client.get(URL)
    return client.post(f"{URL}/actions/{action.id}/{what}", data={"csrf_token": csrf_from(page)})


def _what_we_are_doing(client) -> str:
    page = client.get("/me").get_data(as_text=True)
    found = re.search(r'<ul class="remediation">(.*?)</ul>', page, re.S)
    return re.sub(r"\s+", " ", found[1]) if found else ""


def test_a_public_remediation_action_reaches_the_dashboard_in_both_languages_after_approval(
    app, demo, team, clock
):
    james, sofia = app.test_client(), app.test_client()  # an English and a Spanish reader
    sign_in(james, "james.smith@example.com")
    sign_in(sofia, "sofia.rodriguez@example.com")

    action = _add_action(team["security"])
    assert _what_we_are_doing(james) == "" and _what_we_are_doing(sofia) == ""

    _press(team["security"], action, "submit")
    assert "Waiting for legal" in team["legal"].get(URL).get_data(as_text=True)
    assert _what_we_are_doing(james) == ""  # asked, not yet approved

    # The drafter cannot approve their own text; an admin is not legal.
    _press(team["security"], action, "approve")
    _press(team["admin"], action, "approve")
    assert _what_we_are_doing(james) == ""

    _press(team["legal"], action, "approve")
    assert f"{EN} — done November 12" in _what_we_are_doing(james)
    assert ES not in _what_we_are_doing(james)
    assert f"{ES} — realizado el 12 de noviembre" in _what_we_are_doing(sofia)
    assert EN not in _what_we_are_doing(sofia)

    # A change after approval hides it until it is approved again.
    page = team["security"].get(URL)
    team["security"].post(
        f"{URL}/actions/{action.id}",
        data={
            f"a{action.id}-csrf_token": csrf_from(page),
            **_fields(f"a{action.id}", public_text=EN + " and contractors"),
        },
    )
    assert _what_we_are_doing(james) == "" and _what_we_are_doing(sofia) == ""
    assert investigation.approval_state(action) == "draft"
    _press(team["security"], action, "submit")
    _press(team["legal"], action, "approve")
    assert f"{EN} and contractors — done November 12" in _what_we_are_doing(james)


def test_an_action_not_marked_public_never_reaches_customers_and_needs_both_languages(
    app, demo, team
):
    page = team["security"].get(URL)
    team["security"].post(
        f"{URL}/actions",
        data={"new-csrf_token": csrf_from(page), **_fields("new", public_text_es="")},
    )
    assert db.session.scalar(select(RemediationAction)) is None
    assert "needs its text in English and in Spanish" in team["security"].get(URL).get_data(
        as_text=True
    )
    team["security"].post(
        f"{URL}/actions",
        data={"new-csrf_token": csrf_from(page), **_fields("new", public=None)},
    )
    action = db.session.scalars(select(RemediationAction)).one()
    _press(team["security"], action, "submit")
    assert "Mark the action public first" in team["security"].get(URL).get_data(as_text=True)
    assert investigation.public_actions([demo.id]) == {}


def test_communications_cannot_write_the_record(app, demo, clock):
    writer = app.test_client()
    set_up(app, writer, "comms@example.com", "communications", clock)
    page = writer.get(URL)
    assert page.status_code == 200  # the team reads it
    writer.post(f"{URL}/actions", data={"new-csrf_token": csrf_from(page), **_fields("new")})
    assert db.session.scalar(select(RemediationAction)) is None


def test_the_after_action_report_of_the_demo_incident_lists_every_approval_with_approver_and_time(
    app, demo, team, clock
):
    action = _add_action(team["security"])
    _press(team["security"], action, "submit")
    clock.move(timedelta(minutes=7))
    _press(team["legal"], action, "approve")
    # A second approval, of another subject, by the same lawyer.
    campaign = approvals.submit(
        demo, "campaign", "acme-2026", {"en": "notice"}, drafter=member("admin@example.com")
    )
    clock.move(timedelta(minutes=3))
    approvals.approve(campaign, approver=member("legal@example.com"))
    db.session.commit()
    recorded = approvals.for_incident(demo)
    # The demo's own campaign approval (by its legal member), the action's and the second one.
    assert len(recorded) == 3 and all(a.approved_at for a in recorded)

    page = team["admin"].get("/admin/incidents/acme-2026/report")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    rows = re.search(r'<table class="list" id="approvals">(.*?)</table>', text, re.S)[1]
    for approval in recorded:
        stamp = approval.approved_at.strftime("%Y-%m-%d %H:%M")
        assert re.search(rf"legal@example\.com, {stamp} UTC", rows), stamp
        assert approval.subject in rows
    assert "security@example.com" in rows and "admin@example.com" in rows
    assert "Everyone notified" in text and "Open items" in text

    pdf = team["admin"].post(
        "/admin/incidents/acme-2026/report.pdf", data={"csrf_token": csrf_from(page)}
    )
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    extracted = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    extracted = re.sub(r"\s+", " ", extracted)
    for approval in recorded:
        stamp = approval.approved_at.strftime("%Y-%m-%d %H:%M UTC")
        assert f"by legal@example.com at {stamp}" in extracted, stamp
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "report.downloaded"))


def test_the_report_is_for_admins_and_legal_only(app, demo, team):
    assert team["legal"].get("/admin/incidents/acme-2026/report").status_code == 200
    assert team["security"].get("/admin/incidents/acme-2026/report").status_code == 403


def test_the_report_pdf_prints_spanish_in_a_font_that_covers_it(app, demo, team):
    action = _add_action(team["security"])
    page = team["security"].get(URL)
    team["security"].post(
        f"{URL}/actions/{action.id}",
        data={
            f"a{action.id}-csrf_token": csrf_from(page),
            **_fields(f"a{action.id}", title="Contraseñas y llaves: ¿quién? Año nuevo"),
        },
    )
    page = team["admin"].get("/admin/incidents/acme-2026/report")
    pdf = team["admin"].post(
        "/admin/incidents/acme-2026/report.pdf", data={"csrf_token": csrf_from(page)}
    )
    extracted = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Contraseñas y llaves: ¿quién? Año nuevo" in extracted
