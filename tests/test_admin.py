"""The admin console: incident text, updates and corrections, the public page, admin-only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import AuditEvent, Customer, IncidentUpdate, OutboxMessage
from portal.services import background
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.approval_flow import approve_campaign, approve_update
from tests.conftest import customer_row
from tests.customer_flow import csrf_from, messages_to, sign_in
from tests.staff_flow import set_up

HOSTILE = (
    "Hello <script>alert(1)</script>\n\n"
    "<img src=x onerror=alert(2)>\n\n"
    "[click](javascript:alert(3)) and [ok](https://example.com/info)\n\n"
    '<div hx-get="/admin/staff" hx-trigger="load">x</div> {{7*7}}'
)


@pytest.fixture
def admin(app, clock):
    client = app.test_client()
    # The boss also writes the updates (communications); legal is someone else.
    set_up(app, client, "boss@example.com", "admin", clock, roles=("communications",))
    return client


@pytest.fixture
def customer(app, incident, write_csv):
    import_customers(
        incident, write_csv([customer_row(1, email="c@example.com", phone="")]), actor="test"
    )
    queue_notices(incident, actor="test")
    client = app.test_client()
    sign_in(client, "c@example.com")
    return client


def save_incident(admin, action="save", **changes):
    page = admin.get("/admin/incidents/acme-2026")
    data = {
        "csrf_token": csrf_from(page),
        "title": "Unauthorized access to customer records",
        "status": "notifying",
        "discovered_on": "2026-10-09",
        "occurred_on": "2026-10-02",
        "contained_on": "",
        "what_happened": "Copied.",
        "what_we_are_doing": "Fixing.",
        "more_information": "",
        "contact_phone": "1-800-555-0199",
        "contact_hours": "9-5",
        "contact_email": "",
        "action": action,
    }
    data.update(changes)
    return admin.post("/admin/incidents/acme-2026", data=data)


def assert_inert(html: str) -> None:
    """The hostile text may be shown, escaped; it must never become markup that runs."""
    body = html.split("</head>")[1]
    assert "<script" not in body  # only our nonce'd scripts, in <head>
    assert "<img" not in body and "<div hx-get" not in body
    assert 'href="javascript:' not in body
    assert "{{7*7}}" in body  # shown as typed, never evaluated


def test_hostile_markdown_is_inert_everywhere(admin, customer, app):
    preview = save_incident(admin, action="preview", what_happened=HOSTILE)
    assert preview.status_code == 200
    assert b"Preview: as customers will see it" in preview.data
    assert_inert(preview.get_data(as_text=True))
    assert save_incident(admin, what_happened=HOSTILE).status_code == 302

    dashboard = customer.get("/me").get_data(as_text=True)
    public = app.test_client().get("/incidents/acme-2026").get_data(as_text=True)
    for page in (dashboard, public):
        assert_inert(page)
        assert '<a href="https://example.com/info" rel="noopener noreferrer">ok</a>' in page
        assert "&lt;script&gt;" in page or "alert(1)" not in page


def test_updates_drafts_publishing_and_corrections(admin, customer, app):
    page = admin.get("/admin/incidents/acme-2026/updates")
    admin.post(
        "/admin/incidents/acme-2026/updates",
        data={
            "csrf_token": csrf_from(page),
            "title": "Forensics finished",
            "body": "The investigators found **no** further access.",
        },
    )
    draft = db.session.scalars(select(IncidentUpdate)).one()
    public = app.test_client()
    assert b"Forensics finished" not in customer.get("/me").data  # a draft is not shown
    assert b"Forensics finished" not in public.get("/incidents/acme-2026").data

    approve_update(draft)
    admin.post(f"/admin/updates/{draft.id}/publish", data={"csrf_token": csrf_from(page)})
    assert b"Forensics finished" in customer.get("/me").data
    assert b"<strong>no</strong> further access" in public.get("/incidents/acme-2026").data

    admin.post(
        f"/admin/updates/{draft.id}/correct",
        data={
            "csrf_token": csrf_from(page),
            "title": "Forensics finished (corrected)",
            "body": "One more server was accessed.",
        },
    )
    correction = db.session.scalars(
        select(IncidentUpdate).where(IncidentUpdate.corrects_id == draft.id)
    ).one()
    assert "(corrected)" not in public.get("/incidents/acme-2026").get_data(as_text=True)
    approve_update(correction)
    admin.post(f"/admin/updates/{correction.id}/publish", data={"csrf_token": csrf_from(page)})
    seen = public.get("/incidents/acme-2026").get_data(as_text=True)
    assert "Correction" in seen and "Forensics finished (corrected)" in seen
    assert "The investigators found" in seen  # the original stays as it was published
    assert seen.index("(corrected)") < seen.index("The investigators found")  # newest first
    db.session.expire_all()
    assert db.session.get(IncidentUpdate, draft.id).body.startswith("The investigators")
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert {"update.drafted", "update.published", "update.corrected"} <= set(actions)


def test_the_public_page_holds_nothing_personal(customer, app):
    page = app.test_client().get("/incidents/acme-2026").get_data(as_text=True)
    assert "Unauthorized access to customer records" in page
    assert "c@example.com" not in page and "Person Number1" not in page
    assert app.test_client().get("/incidents/no-such").status_code == 404


def test_bad_incident_input_changes_nothing(admin, incident):
    response = save_incident(admin, discovered_on="not a date", title="New title")
    assert response.status_code == 200
    db.session.expire_all()
    from portal.models import Incident

    assert db.session.scalars(select(Incident)).one().title != "New title"


def test_an_agent_gets_403_on_every_admin_route(app, clock):
    agent = app.test_client()
    set_up(app, agent, "agent.x@example.com", "agent", clock)
    token = csrf_from(agent.get("/staff/cases"))
    admin_rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.")]
    assert len(admin_rules) >= 8
    for rule in admin_rules:
        path = re.sub(r"<[^>]+>", "x", re.sub(r"<int:[^>]+>", "1", rule.rule))
        if "GET" in rule.methods:
            assert agent.get(path).status_code == 403, path
        if "POST" in rule.methods:
            assert agent.post(path, data={"csrf_token": token}).status_code == 403, path


def test_the_audit_viewer_searches_and_verifies(admin, customer, app):
    page = admin.get("/admin/audit?action=customer.verified")
    text = page.get_data(as_text=True)
    assert "customer.verified" in text and "staff.signed_in" not in text
    everything = admin.get("/admin/audit").get_data(as_text=True)
    assert "staff.password_set" in everything
    verified = admin.post("/admin/audit/verify", data={"csrf_token": csrf_from(page)})
    assert verified.status_code == 302
    assert b"The audit chain is intact" in admin.get("/admin/audit").data
    hostile = admin.get("/admin/audit?actor=%25&page=zz")
    assert hostile.status_code == 200 and b"No events match." in hostile.data
    not_a_date = admin.get("/admin/audit?since=not-a-date")
    assert not_a_date.status_code == 400 and b"Give a date like 2026-11-20" in not_a_date.data


def test_the_audit_viewer_shows_the_address_and_a_tail_missing_since_the_checkpoint(
    admin, customer, app, tmp_path
):
    from tests.test_audit import _bypass_append_only

    page = admin.get("/admin/audit")
    assert "<td>127.0.0.1</td>" in page.get_data(as_text=True)  # the test client's address

    app.config["AUDIT_ANCHOR_FILE"] = str(tmp_path / "anchor.jsonl")
    assert app.test_cli_runner().invoke(args=["audit", "checkpoint"]).exit_code == 0
    newest = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id.desc())).first()
    _bypass_append_only("DELETE FROM audit_event WHERE id = :id", {"id": newest})
    admin.post("/admin/audit/verify", data={"csrf_token": csrf_from(page)})
    text = admin.get("/admin/audit").get_data(as_text=True)
    assert "The audit chain is broken: 1 event is missing since the checkpoint of" in text


def _upload(admin, content: str):
    page = admin.get("/admin/incidents/acme-2026/import")
    return admin.post(
        "/admin/incidents/acme-2026/import",
        data={
            "csrf_token": csrf_from(page),
            "file": (io.BytesIO(content.encode()), "customers.csv"),
        },
        content_type="multipart/form-data",
    )


HEADER = "external_id,full_name,email,phone,locale,region,data_classes\n"


def test_a_browser_upload_with_bad_rows_reports_and_writes_nothing(admin, incident, app):
    bad = HEADER + "C-1,Ann,ann@example.com,,en,US-CA,ssn\nC-2,Bob,not-an-email,,en,,ssn\n"
    response = _upload(admin, bad)
    job_path = response.headers["Location"]
    assert job_path.startswith("/admin/jobs/")
    assert b"Status: waiting for the background worker" in admin.get(job_path).data
    background.run_one()  # what the worker does
    page = admin.get(job_path).get_data(as_text=True)
    assert "1 problem(s) in 2 rows: nothing was written" in page
    assert "email is not a valid address" in page and ">3<" in page
    assert "Import them" not in page
    assert db.session.scalars(select(Customer)).all() == []


def test_a_good_upload_imports_after_confirmation(admin, incident, app):
    good = HEADER + "C-1,Ann,ann@example.com,,en,US-CA,ssn\nC-2,Bob,bob@example.com,,en,,ssn\n"
    check_path = _upload(admin, good).headers["Location"]
    background.run_one()
    page = admin.get(check_path)
    assert b"2 rows checked: no problems." in page.data
    assert db.session.scalars(select(Customer)).all() == []  # not before the confirmation
    confirm = admin.post(check_path + "/confirm", data={"csrf_token": csrf_from(page)})
    import_path = confirm.headers["Location"]
    assert import_path != check_path
    background.run_one()
    progress = admin.get(import_path + "/progress")
    assert b"Status: done" in progress.data and progress.headers["HX-Refresh"] == "true"
    assert b"Imported 2 rows: 2 new" in admin.get(import_path).data
    assert len(db.session.scalars(select(Customer)).all()) == 2
    uploads = list((Path(app.instance_path) / "uploads").glob("*.csv"))
    assert uploads == []  # the uploaded file is gone once imported


def test_a_second_import_them_click_shows_the_first_import_not_a_failed_job(admin, incident, app):
    good = HEADER + "C-1,Ann,ann@example.com,,en,US-CA,ssn\nC-2,Bob,bob@example.com,,en,,ssn\n"
    check_path = _upload(admin, good).headers["Location"]
    background.run_one()
    page = admin.get(check_path)
    token = csrf_from(page)
    first = admin.post(check_path + "/confirm", data={"csrf_token": token})
    second = admin.post(check_path + "/confirm", data={"csrf_token": token})  # a double click

    assert second.headers["Location"] == first.headers["Location"]
    shown = admin.get(second.headers["Location"]).get_data(as_text=True)
    assert "This file was already sent for import: here is that import." in shown
    background.run_one()
    assert background.run_one() is None  # one import job, not two
    done = admin.get(first.headers["Location"]).get_data(as_text=True)
    assert "Imported 2 rows: 2 new" in done

    # Back on the check's page after the import (the file is gone): a link, no button, and
    # a form sent again from an old tab still leads to the import that ran.
    page = admin.get(check_path).get_data(as_text=True)
    assert "Import them" not in page and "see that import" in page
    again = admin.post(check_path + "/confirm", data={"csrf_token": token})
    assert again.headers["Location"] == first.headers["Location"]
    assert "failed" not in admin.get(again.headers["Location"]).get_data(as_text=True)
    assert len(db.session.scalars(select(Customer)).all()) == 2


def test_two_confirmations_at_the_same_moment_queue_one_import(admin, incident, app):
    from sqlalchemy.orm.attributes import set_committed_value

    check_path = _upload(admin, HEADER + "C-1,Ann,ann@example.com,,en,,ssn\n").headers["Location"]
    background.run_one()
    check = background.get(check_path.rsplit("/", 1)[1])
    read_before = check.result  # what both requests read before either wrote
    first, new = background.submit_after(check, "import_customers", {}, actor="test")
    assert new
    set_committed_value(check, "result", read_before)  # the second request's stale view
    second, new = background.submit_after(check, "import_customers", {}, actor="test")
    assert not new and second.public_id == first.public_id


def _upload_bytes(admin, content: bytes):
    page = admin.get("/admin/incidents/acme-2026/import")
    return admin.post(
        "/admin/incidents/acme-2026/import",
        data={"csrf_token": csrf_from(page), "file": (io.BytesIO(content), "customers.csv")},
        content_type="multipart/form-data",
    )


def test_the_check_page_names_the_line_that_is_not_utf8_and_never_says_0_rows(admin, incident, app):
    rows = [f"C-{n},Person {n},p{n}@example.com,,en,,ssn\n".encode() for n in range(1, 8)]
    rows[3] = "C-4,José,p4@example.com,,en,,ssn\n".encode("latin-1")
    job_path = _upload_bytes(admin, HEADER.encode() + b"".join(rows)).headers["Location"]
    background.run_one()
    page = admin.get(job_path).get_data(as_text=True)
    assert "1 problem(s) in 7 rows: nothing was written" in page
    assert "<td>5</td><td>this line is not UTF-8 text" in page

    wide = (HEADER + "C-1,Ann,ann@example.com,,en,,ssn\n").encode("utf-16")
    job_path = _upload_bytes(admin, wide).headers["Location"]
    background.run_one()
    page = admin.get(job_path).get_data(as_text=True)
    assert "in 0 rows" not in page
    assert "The file could not be read: nothing was written" in page
    assert "the file is saved as UTF-16" in page
    assert db.session.scalars(select(Customer)).all() == []


def test_an_import_that_fails_says_so_at_once_and_is_not_run_again(admin, incident, app):
    good = HEADER + "C-1,Ann,ann@example.com,,en,US-CA,ssn\n"
    job_path = _upload(admin, good).headers["Location"]
    for upload in (Path(app.instance_path) / "uploads").glob("*.csv"):
        upload.unlink()  # the file is gone before the worker reads it
    background.run_one()
    page = admin.get(job_path).get_data(as_text=True)
    assert "Status: failed" in page
    assert "The job failed (FileNotFoundError)" in page
    assert background.run_one() is None  # an admin's job is started again by hand, not retried


def test_the_campaign_sends_and_retries(admin, incident, app, write_csv):
    import_customers(
        incident,
        write_csv([customer_row(n, email=f"p{n}@example.com", phone="") for n in range(1, 4)]),
        actor="test",
    )
    page = admin.get("/admin/incidents/acme-2026/campaign")
    assert b"not yet notified (3)" in page.data
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    assert b"Send 3 notices" in page.data
    approve_campaign(incident)
    response = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "3"},
    )
    background.run_one()
    assert b"3 notice(s) queued" in admin.get(response.headers["Location"]).data
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.notice_id.is_not(None)).values(status="failed")
    )
    db.session.commit()
    page = admin.get("/admin/incidents/acme-2026/campaign")
    assert b"Try the failed ones again (3)" in page.data
    admin.post(
        "/admin/incidents/acme-2026/campaign/resend-failed", data={"csrf_token": csrf_from(page)}
    )
    statuses = {
        m.status
        for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.notice_id.is_not(None))
        )
    }
    assert statuses == {"queued"}


def test_publishing_can_email_every_affected_customer_once(admin, customer, app):
    page = admin.get("/admin/incidents/acme-2026/updates")
    admin.post(
        "/admin/incidents/acme-2026/updates",
        data={"csrf_token": csrf_from(page), "title": "Phone line extended", "body": "Now 24/7."},
    )
    draft = db.session.scalars(select(IncidentUpdate)).one()
    approve_update(draft)
    response = admin.post(
        f"/admin/updates/{draft.id}/publish", data={"csrf_token": csrf_from(page), "notify": "yes"}
    )
    job_path = response.headers["Location"]
    background.run_one()
    assert b"1 customer(s) will be emailed" in admin.get(job_path).data
    from portal.services.updates import notify_affected

    assert notify_affected(draft.id) == 0  # a second run sends nobody a second copy
    mail = [m for m in messages_to("c@example.com") if "An update about" in m.row.subject]
    assert len(mail) == 1 and "Phone line extended" in mail[0].text


def test_an_admin_creates_an_incident_and_sees_the_data_involved(admin, app, write_csv):
    page = admin.get("/admin/incidents/new")
    bad = admin.post(
        "/admin/incidents/new",
        data={
            "csrf_token": csrf_from(page),
            "slug": "Bad Slug",
            "title": "T",
            "discovered_on": "2026-11-20",
        },
    )
    assert b"lowercase letters" in bad.data
    made = admin.post(
        "/admin/incidents/new",
        data={
            "csrf_token": csrf_from(page),
            "slug": "web-2026",
            "title": "Web shop",
            "discovered_on": "2026-11-20",
        },
    )
    assert made.headers["Location"] == "/admin/incidents/web-2026"
    from portal.services.incidents import get_by_slug

    import_customers(
        get_by_slug("web-2026"),
        write_csv([customer_row(1, data_classes="payment_card:4242;email_address")]),
        actor="test",
    )
    page = admin.get("/admin/incidents/web-2026").get_data(as_text=True)
    assert "email_address (1)" in page and "payment_card (1)" in page


def test_the_check_page_speaks_the_admins_language_and_says_what_a_waiting_job_waits_for(
    admin, incident, app
):
    """Walking issue 13: the worker wrote the problems in its own language (English) for an admin
    reading in Spanish; the status was the raw word ("queued", "done"), and a job waiting for a
    worker that is not running said nothing of it."""
    from tests.customer_flow import csrf_from

    page = admin.get("/admin/")
    admin.post("/language", data={"csrf_token": csrf_from(page), "lang": "es", "next": "/admin/"})
    rows = [f"C-{n},Person {n},p{n}@example.com,,en,,ssn\n".encode() for n in range(1, 8)]
    rows[3] = "C-4,José,p4@example.com,,en,,ssn\n".encode("latin-1")
    job_path = _upload_bytes(admin, HEADER.encode() + b"".join(rows)).headers["Location"]
    waiting = admin.get(job_path).get_data(as_text=True)
    background.run_one()
    page = admin.get(job_path).get_data(as_text=True)

    assert "esperando al proceso de fondo" in waiting and "portal outbox work" in waiting
    assert "esta línea no es texto UTF-8" in page
    assert "this line is not UTF-8" not in page and "Estado: done" not in page


def test_the_incident_form_records_the_facts_the_law_asks_for(admin, incident):
    page = admin.get("/admin/incidents/acme-2026").get_data(as_text=True)
    for label in (
        "Occurred until (last day, when it ran over several days)",
        "Determined to be material on (for the SEC)",
        "Notice was delayed because law enforcement asked",
        "Our role under HIPAA",
        "Covered entity (health plan, provider, clearinghouse)",
        "Notice must go by post to anyone who has not agreed to email (HIPAA)",
    ):
        assert label in page
    assert page.index('name="occurred_on"') < page.index('name="occurred_to"')
    response = save_incident(
        admin,
        occurred_to="2026-10-08",
        materiality_on="2026-11-25",
        delayed_by_law_enforcement="y",
        hipaa_role="covered_entity",
        postal_notice="y",
    )
    assert response.status_code == 302
    db.session.expire_all()
    from portal.models import Incident

    saved = db.session.scalars(select(Incident)).one()
    assert saved.occurred_to.isoformat() == "2026-10-08"
    assert saved.materiality_on.isoformat() == "2026-11-25"
    assert saved.delayed_by_law_enforcement and saved.postal_notice
    assert saved.hipaa_role == "covered_entity"
    shown = admin.get("/admin/incidents/acme-2026").get_data(as_text=True)
    assert 'value="2026-10-08"' in shown and '<option selected value="covered_entity">' in shown

    # Unticked boxes are saved as unticked, as a browser sends them.
    assert save_incident(admin, hipaa_role="none").status_code == 302
    db.session.expire_all()
    saved = db.session.scalars(select(Incident)).one()
    assert not saved.delayed_by_law_enforcement and not saved.postal_notice
    assert saved.hipaa_role == "none"


def test_a_breach_cannot_end_before_it_began_or_have_an_unknown_hipaa_role(admin, incident):
    from portal.models import Incident

    before = save_incident(admin, occurred_on="2026-10-02", occurred_to="2026-10-01")
    assert before.status_code == 200
    assert "The last day cannot be before the first day." in before.get_data(as_text=True)
    unknown = save_incident(admin, hipaa_role="landlord")
    assert unknown.status_code == 200
    db.session.expire_all()
    saved = db.session.scalars(select(Incident)).one()
    assert saved.occurred_to is None and saved.hipaa_role == "none"


def test_the_service_refuses_a_range_that_ends_before_it_begins(incident):
    from datetime import date

    from portal.services.incidents import IncidentError, update_incident

    with pytest.raises(IncidentError):
        update_incident(incident, actor="test", occurred_to=date(2026, 10, 1))
    with pytest.raises(IncidentError):
        update_incident(incident, actor="test", hipaa_role="landlord")
