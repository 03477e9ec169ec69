"""A line break typed into a title never reaches an email header: the forms refuse it, and the
outbox keeps every subject on one line whatever the stored text holds."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Incident, IncidentUpdate, OutboxMessage
from portal.services import updates
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.approval_flow import approve_update
from tests.conftest import customer_row
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up

FORGED = "Breach update\r\nBcc: everyone@evil.example"
ONE_LINE = "Write this on one line, without line breaks or control characters."


@pytest.fixture
def admin(app, clock, incident):
    client = app.test_client()
    set_up(app, client, "boss@example.com", "admin", clock, roles=("communications",))
    return client


def _title() -> str:
    db.session.expire_all()
    return db.session.scalars(select(Incident.title)).one()


def test_a_line_break_in_an_incident_title_is_refused_with_a_clear_message(admin):
    before = _title()
    page = admin.get("/admin/incidents/acme-2026")
    form = {
        "csrf_token": csrf_from(page),
        "title": FORGED,
        "status": "notifying",
        "discovered_on": "2026-10-09",
        "contact_hours": "9-5",
        "action": "save",
    }
    refused = admin.post("/admin/incidents/acme-2026", data=form)
    assert refused.status_code == 200 and ONE_LINE in refused.get_data(as_text=True)
    # The Spanish title and the contact hours are one-line fields too.
    for name in ("title_es", "contact_hours"):
        answer = admin.post(
            "/admin/incidents/acme-2026", data=form | {"title": before, name: "a\nb"}
        )
        assert ONE_LINE in answer.get_data(as_text=True), name
    assert _title() == before

    page = admin.get("/admin/incidents/new")
    created = admin.post(
        "/admin/incidents/new",
        data={
            "csrf_token": csrf_from(page),
            "slug": "other-2026",
            "title": FORGED,
            "discovered_on": "2026-10-09",
        },
    )
    assert ONE_LINE in created.get_data(as_text=True)
    assert db.session.scalars(select(Incident.slug)).all() == ["acme-2026"]


def test_a_line_break_in_an_update_title_is_refused_with_a_clear_message(admin):
    page = admin.get("/admin/incidents/acme-2026")
    admin.post(
        "/admin/incidents/acme-2026/updates",
        data={"csrf_token": csrf_from(page), "title": FORGED, "body": "Text."},
    )
    assert db.session.scalars(select(IncidentUpdate)).all() == []
    with pytest.raises(updates.UpdateError, match="one line"):
        updates.draft(db.session.scalars(select(Incident)).one(), FORGED, "Text.", actor="t")


def test_update_emails_go_out_with_a_one_line_subject_even_if_a_title_holds_a_line_break(
    app, incident, write_csv
):
    import_customers(
        incident, write_csv([customer_row(1, email="c@example.com", phone="")]), actor="test"
    )
    queue_notices(incident, actor="test")
    # A title stored before titles were checked (or written around the form).
    db.session.execute(update(Incident).values(title=FORGED))
    news = updates.draft(incident, "Forensics finished", "Nothing more.", actor="test")
    approve_update(news)
    updates.publish(news, actor="test")

    assert updates.notify_affected(news.id) == 1

    row = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%update%"))
    ).one()
    assert "\r" not in row.subject and "\n" not in row.subject
    headers = row.body.split(b"\r\n\r\n", 1)[0].decode()
    assert "Bcc:" not in headers.replace("\r\n ", " ").split("Subject:")[0]
    assert not any(line.startswith("Bcc:") for line in headers.split("\r\n"))
