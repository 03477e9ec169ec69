"""The assessment and investigation record: the scope with counts from the import, one timeline,
root-cause findings, and remediation actions whose public text reaches customers only once legal
has approved exactly that text."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Incident
from portal.services import investigation
from portal.services.demo import load_demo
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up


@pytest.fixture
def demo(app):
    load_demo(actor="test")
    db.session.commit()
    return db.session.scalar(select(Incident).where(Incident.slug == "acme-2026"))


@pytest.fixture
def admin(app, client, clock):
    clock.move_to(datetime(2026, 11, 20, 12, tzinfo=UTC))
    set_up(app, client, "boss@example.com", "admin", clock)
    return client


def test_the_scope_counts_come_from_the_import_and_the_team_adds_systems_and_data_sets(demo, admin):
    page = admin.get("/admin/incidents/acme-2026/investigation")
    text = page.get_data(as_text=True)
    assert "People affected (from the imports): 12" in text
    # By region (US-CA has two of the demo's people) and by data class.
    assert "<td>US-CA</td><td>2</td>" in text and "<td>full_name</td><td>5</td>" in text
    response = admin.post(
        "/admin/incidents/acme-2026/investigation/scope",
        data={
            "csrf_token": csrf_from(page),
            "affected_systems": "Customer database replica db-7",
            "affected_data_sets": "customers_2026 export",
            "contained_on": "2026-10-11",
        },
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert demo.contained_on == date(2026, 10, 11)
    text = admin.get("/admin/incidents/acme-2026/investigation").get_data(as_text=True)
    assert "Customer database replica db-7" in text and "customers_2026 export" in text
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "investigation.scope"))


def test_the_timeline_is_the_incidents_own_dates_and_notified_comes_from_the_campaign(demo, app):
    t = investigation.timeline(demo)
    assert (t.occurred_on, t.occurred_to) == (date(2026, 10, 2), date(2026, 10, 9))
    assert (t.discovered_on, t.contained_on) == (date(2026, 10, 9), date(2026, 10, 10))
    # The demo's notices are queued, not sent: nobody is notified yet.
    assert t.notified_on is None and t.first_notice_at is None
    from portal.models import Notice

    sent = datetime(2026, 10, 20, 9, tzinfo=UTC)
    for notice in db.session.scalars(select(Notice)):
        notice.sent_at = sent
    from portal.models import OutboxMessage

    for message in db.session.scalars(select(OutboxMessage)):
        message.status = "sent"
    db.session.flush()
    t = investigation.timeline(demo)
    assert t.notified_on == date(2026, 10, 20) and t.first_notice_at == sent


def test_a_contained_date_before_the_breach_began_or_in_the_future_is_refused(demo, admin):
    page = admin.get("/admin/incidents/acme-2026/investigation")
    for day, message in (
        ("2026-09-01", "cannot be contained before it began"),
        ("2027-01-01", "cannot be in the future"),
    ):
        admin.post(
            "/admin/incidents/acme-2026/investigation/scope",
            data={"csrf_token": csrf_from(page), "contained_on": day},
        )
        text = admin.get("/admin/incidents/acme-2026/investigation").get_data(as_text=True)
        assert message in text
    db.session.expire_all()
    assert demo.contained_on == date(2026, 10, 10)


def test_findings_are_recorded_in_order_and_audited(demo, admin):
    page = admin.get("/admin/incidents/acme-2026/investigation")
    for text in ("Stolen VPN credential without MFA", "Access logs: 3 IPs, 2-9 October"):
        admin.post(
            "/admin/incidents/acme-2026/investigation/findings",
            data={"csrf_token": csrf_from(page), "text": text},
        )
    page = admin.get("/admin/incidents/acme-2026/investigation").get_data(as_text=True)
    assert page.index("Stolen VPN credential") < page.index("Access logs: 3 IPs")
    assert next(f.text for f in investigation.findings(demo)) == "Stolen VPN credential without MFA"
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "investigation.finding")
    ).all()
    assert len(events) == 2


def test_an_agent_cannot_open_the_investigation_record(demo, app, client, clock):
    set_up(app, client, "agent@example.com", "agent", clock)
    assert client.get("/admin/incidents/acme-2026/investigation").status_code == 403
