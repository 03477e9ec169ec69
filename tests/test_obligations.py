"""The legal clock: which duties apply, their deadlines, and recording them as done."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import insert

from portal.extensions import db, vault
from portal.models import Customer, Exposure
from portal.services import obligations
from portal.services.incidents import create_incident
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up

DISCOVERED = date(2026, 11, 2)  # a Monday


def add_customers(incident, region: str, count: int, classes=("email_address",)) -> None:
    """Many customers at once, straight into the tables (the import is tested elsewhere)."""
    rows = []
    for n in range(count):
        public_id = f"{region}-{n:05d}".ljust(32, "0")[:32]
        rows.append(
            {
                "public_id": public_id,
                "external_id": f"{region}-{n}",
                "name_sealed": vault.seal("x", f"customer.name.{public_id}"),
                "email_sealed": vault.seal("x@example.com", f"customer.email.{public_id}"),
                "email_index": vault.blind_index(f"{region}{n}", "email"),
                "locale": "en",
                "region": region,
            }
        )
    db.session.execute(insert(Customer), rows)
    ids = db.session.query(Customer.id).filter(Customer.region == region).all()
    db.session.execute(
        insert(Exposure),
        [
            {"customer_id": i, "incident_id": incident.id, "data_class": c}
            for (i,) in ids
            for c in classes
        ],
    )
    db.session.commit()


@pytest.fixture
def scenario(app):
    incident = create_incident(slug="big-2026", title="Big", discovered_on=DISCOVERED, actor="test")
    add_customers(incident, "US-CA", 600)
    add_customers(incident, "US-TX", 300)
    add_customers(incident, "DE", 5)
    return incident


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def test_the_duties_and_deadlines_for_a_known_scenario(scenario):
    statuses = {s.duty.id: s for s in obligations.for_incident(scenario)}
    assert set(statuses) == {
        "gdpr-authority",
        "ca-individuals",
        "ca-attorney-general",
        "tx-individuals",
        "tx-attorney-general",
    }
    start = datetime.combine(DISCOVERED, time.min, tzinfo=UTC)
    assert statuses["gdpr-authority"].due_at == start + timedelta(hours=72)
    assert statuses["ca-individuals"].due_at == end_of(DISCOVERED + timedelta(days=30))
    assert statuses["ca-attorney-general"].due_at == end_of(DISCOVERED + timedelta(days=15))
    assert statuses["tx-individuals"].due_at == end_of(DISCOVERED + timedelta(days=60))
    assert statuses["tx-attorney-general"].due_at == end_of(DISCOVERED + timedelta(days=30))


def test_thresholds_and_other_duties(app):
    incident = create_incident(
        slug="small-2026", title="Small", discovered_on=DISCOVERED, actor="test"
    )
    add_customers(incident, "US-CA", 10)  # no AG copy under 501
    add_customers(incident, "US-TX", 249, classes=("medical_records",))  # no TX AG under 250
    ids = {s.duty.id for s in obligations.for_incident(incident)}
    assert "ca-attorney-general" not in ids and "tx-attorney-general" not in ids
    assert {"ca-individuals", "tx-individuals", "hipaa-individuals", "hipaa-hhs"} <= ids
    assert "hipaa-media" not in ids and "gdpr-authority" not in ids


def test_sec_counts_business_days_from_the_materiality_decision(app):
    incident = create_incident(
        slug="sec-2026", title="Listed", discovered_on=DISCOVERED, actor="test"
    )
    incident.materiality_on = date(2026, 11, 5)  # a Thursday
    db.session.commit()
    add_customers(incident, "US-NY", 1)
    sec = next(s for s in obligations.for_incident(incident) if s.duty.id == "sec-8k")
    assert sec.due_at.date() == date(2026, 11, 11)  # Fri, Mon, Tue, Wed


def test_recording_a_duty_takes_it_off_the_overdue_list(app, scenario, clock):
    overdue = [s.duty.id for s in obligations.attention([scenario]) if s.overdue]
    assert "gdpr-authority" in overdue  # discovered weeks ago
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    front = admin.get("/admin/").get_data(as_text=True)
    assert "GDPR: notify the lead supervisory authority" in front and "Overdue" in front
    page = admin.get("/admin/obligations")
    assert b"Not legal advice" in page.data
    response = admin.post(
        "/admin/obligations/big-2026/gdpr-authority",
        data={"csrf_token": csrf_from(page), "done_on": "2026-11-04", "how": "Filed, ref BfDI-123"},
    )
    assert response.status_code == 302
    still = [s.duty.id for s in obligations.attention([scenario]) if s.overdue]
    assert "gdpr-authority" not in still
    assert b"Filed, ref BfDI-123" in admin.get("/admin/obligations").data
    bad = admin.post(
        "/admin/obligations/big-2026/ca-individuals",
        data={"csrf_token": csrf_from(page), "done_on": "soon", "how": "x"},
    )
    assert bad.status_code == 302
    ca = next(s for s in obligations.for_incident(scenario) if s.duty.id == "ca-individuals")
    assert ca.done is None  # a bad date records nothing


def test_the_catalogue_cites_its_sources():
    as_of, duties = obligations.catalogue()
    assert as_of and len(duties) >= 12
    assert all(d.source for d in duties)
