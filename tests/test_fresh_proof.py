"""Proving it again: sensitive acts need a recent password and code, and asking for them never
makes anyone enter or choose something twice."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from portal.extensions import db
from portal.models import ContactChange, Customer, Job, KeptAct, Notice
from portal.services import background
from portal.services.imports import import_customers
from tests.approval_flow import approve_campaign
from tests.conftest import customer_row
from tests.customer_flow import csrf_from
from tests.staff_flow import PASSWORD, code_for, confirm_it_is_you, set_up

ADMIN = "boss@example.com"
CSV = (
    "external_id,full_name,email,phone,locale,region,data_classes\n"
    "C-1,Ann,ann@example.com,,en,US-CA,ssn\n"
    "C-2,Bob,bob@example.com,,en,,ssn\n"
)
STALE = 6 * 60  # seconds: the sign-in's proof is older than the five minutes acts allow


@pytest.fixture
def admin(app, clock):
    client = app.test_client()
    set_up(app, client, ADMIN, "admin", clock)
    return client


def jobs() -> list[Job]:
    db.session.expire_all()
    return list(db.session.scalars(select(Job).order_by(Job.id)))


def kept_files(app) -> list[Path]:
    folder = Path(app.instance_path) / "kept"
    return sorted(folder.iterdir()) if folder.exists() else []


def kept_rows() -> list[tuple[str, bytes]]:
    """The kept acts as stored: (id, payload bytes), read past the model, as a disk would be."""
    db.session.expire_all()
    rows = db.session.execute(text("SELECT public_id, payload_sealed FROM kept_act")).all()
    return [(public_id, bytes(payload)) for public_id, payload in rows]


def upload(admin, page):
    return admin.post(
        "/admin/incidents/acme-2026/import",
        data={"csrf_token": csrf_from(page), "file": (io.BytesIO(CSV.encode()), "customers.csv")},
        content_type="multipart/form-data",
    )


def test_a_csv_uploaded_with_a_stale_proof_is_checked_after_reauthentication_without_a_new_upload(
    admin, incident, app, clock
):
    page = admin.get("/admin/incidents/acme-2026/import")
    clock.tick(STALE)  # six minutes finding the file
    asked = upload(admin, page)
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert jobs() == []  # nothing done yet
    assert kept_files(app) == []  # nothing on this instance's disk ...
    ((kept_id, payload),) = kept_rows()  # ... one row in the database, sealed
    assert b"ann@example.com" not in payload and b"external_id" not in payload
    assert kept_id not in asked.headers["Location"]  # and never in an address

    done = confirm_it_is_you(admin, asked, ADMIN, clock)
    check_path = done.headers["Location"]
    assert check_path.startswith("/admin/jobs/") and len(jobs()) == 1
    assert kept_rows() == []  # the kept copy is gone once used
    background.run_one()
    page = admin.get(check_path)
    assert b"2 rows checked: no problems." in page.data
    confirm = admin.post(check_path + "/confirm", data={"csrf_token": csrf_from(page)})
    background.run_one()
    assert b"Imported 2 rows: 2 new" in admin.get(confirm.headers["Location"]).data
    assert len(db.session.scalars(select(Customer)).all()) == 2


def test_a_campaign_started_with_a_stale_proof_sends_after_reauthentication_without_a_new_choice(
    admin, incident, app, clock, write_csv
):
    import_customers(
        incident,
        write_csv([customer_row(n, email=f"p{n}@example.com", phone="") for n in range(1, 4)]),
        actor="test",
    )
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign")
    clock.tick(STALE)
    asked = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "3"},
    )
    assert asked.headers["Location"].startswith("/staff/reauth") and jobs() == []
    reauth_page = admin.get(asked.headers["Location"])
    assert b"Confirm it is you first" in reauth_page.data
    assert b"nothing to enter or choose again" in reauth_page.data

    done = confirm_it_is_you(admin, asked, ADMIN, clock)
    assert done.headers["Location"].startswith("/admin/jobs/")
    background.run_one()
    assert b"3 notice(s) queued" in admin.get(done.headers["Location"]).data
    assert len(db.session.scalars(select(Notice)).all()) == 3


def test_a_wrong_code_keeps_the_act_and_asks_again(admin, incident, app, clock, write_csv):
    import_customers(
        incident, write_csv([customer_row(1, email="p1@example.com", phone="")]), actor="test"
    )
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign")
    clock.tick(STALE)
    asked = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    page = admin.get(asked.headers["Location"])
    resume = page.get_data(as_text=True).split('name="resume" value="')[1].split('"')[0]
    wrong = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={
            "csrf_token": csrf_from(page),
            "resume": resume,
            "password": PASSWORD,
            "code": "000000",
        },
    )
    assert wrong.status_code == 422 and b"That password and code do not match." in wrong.data
    assert f'name="resume" value="{resume}"'.encode() in wrong.data and jobs() == []
    clock.tick()
    right = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={
            "csrf_token": csrf_from(wrong),
            "resume": resume,
            "password": PASSWORD,
            "code": code_for(ADMIN, clock),
        },
    )
    assert right.headers["Location"].startswith("/admin/jobs/") and len(jobs()) == 1


def test_a_kept_acts_page_shares_the_lock_and_the_allowance_of_reauthentication(
    admin, incident, app, clock, write_csv
):
    import_customers(
        incident, write_csv([customer_row(1, email="p1@example.com", phone="")]), actor="test"
    )
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign")
    clock.tick(STALE)
    asked = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    page = admin.get(asked.headers["Location"])
    resume = page.get_data(as_text=True).split('name="resume" value="')[1].split('"')[0]
    token = csrf_from(page)

    def on_the_acts_page(password, code):
        return admin.post(
            "/admin/incidents/acme-2026/campaign/send",
            data={"csrf_token": token, "resume": resume, "password": password, "code": code},
        )

    wrong = [
        admin.post(
            "/staff/reauth",
            data={"csrf_token": token, "password": f"guess {n}", "code": "123456"},
        )
        for n in range(10)
    ]
    assert all(b"That password and code do not match." in w.data for w in wrong)
    # Ten failures: the account is now locked, on this page as on any other.
    right = on_the_acts_page(PASSWORD, code_for(ADMIN, clock))
    assert right.status_code == 422 and b"That password and code do not match." in right.data
    assert jobs() == []
    more = [on_the_acts_page(f"guess {n}", "123456") for n in range(9)]
    assert [m.status_code for m in more] == [422] * 9
    # Twenty tries in all, on either page: the next is refused before any check.
    assert on_the_acts_page(PASSWORD, code_for(ADMIN, clock)).status_code == 429
    assert jobs() == []


def test_a_kept_act_is_finished_only_by_the_session_that_kept_it(admin, incident, app, clock):
    page = admin.get("/admin/incidents/acme-2026/import")
    clock.tick(STALE)
    asked = upload(admin, page)
    resume = admin.get(asked.headers["Location"]).get_data(as_text=True)
    resume = resume.split('name="resume" value="')[1].split('"')[0]

    other = app.test_client()
    set_up(app, other, "other.admin@example.com", "admin", clock)
    page = other.get("/staff/cases")
    clock.tick()
    answer = other.post(
        "/admin/incidents/acme-2026/import",
        data={
            "csrf_token": csrf_from(page),
            "resume": resume,
            "password": PASSWORD,
            "code": code_for("other.admin@example.com", clock),
        },
    )
    assert answer.status_code == 302 and not answer.headers["Location"].startswith("/admin/jobs/")
    assert b"no longer kept" in other.get(answer.headers["Location"]).data
    assert jobs() == []


def test_an_act_kept_on_one_app_instance_is_finished_on_another(
    admin, incident, app, clock, env, make_app, monkeypatch, tmp_path
):
    """Behind a load balancer the proof may reach another instance, with its own disk."""
    page = admin.get("/admin/incidents/acme-2026/import")
    clock.tick(STALE)
    asked = upload(admin, page)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "other-instance"))
    other_instance = make_app(env)
    other_instance.test_client_class = type(admin)
    other = other_instance.test_client()
    other._cookies = admin._cookies  # the same browser, answered by the other instance
    done = confirm_it_is_you(other, asked, ADMIN, clock)
    assert done.headers["Location"].startswith("/admin/jobs/") and len(jobs()) == 1


def test_a_page_or_export_asked_for_with_a_stale_proof_opens_after_reauthentication(
    admin, incident, clock
):
    for path in ("/admin/incidents/acme-2026/import", "/admin/metrics.csv"):
        clock.tick(STALE)
        asked = admin.get(path)
        assert asked.headers["Location"].startswith("/staff/reauth")
        done = confirm_it_is_you(admin, asked, ADMIN, clock)
        assert done.headers["Location"] == path  # the same address again, nothing to redo
        assert admin.get(path).status_code == 200


def test_an_abandoned_act_is_not_done_by_a_later_proof(admin, incident, app, clock, write_csv):
    import_customers(
        incident, write_csv([customer_row(1, email="p1@example.com", phone="")]), actor="test"
    )
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign")
    clock.tick(STALE)
    admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    # They left the "Confirm it is you" page, and later asked for an export instead.
    asked = admin.get("/admin/metrics.csv")
    assert confirm_it_is_you(admin, asked, ADMIN, clock).headers["Location"] == "/admin/metrics.csv"
    assert jobs() == []


def test_an_act_nobody_came_back_for_is_not_kept_past_fifteen_minutes(
    admin, incident, app, clock, write_csv
):
    import_customers(
        incident, write_csv([customer_row(1, email="p1@example.com", phone="")]), actor="test"
    )
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign")
    clock.tick(STALE)
    asked = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    ((left, _payload),) = kept_rows()
    # Kept sixteen minutes ago (while the session itself was kept alive).
    kept = db.session.scalars(select(KeptAct)).one()
    kept.created_at -= timedelta(minutes=16)
    db.session.commit()
    done = confirm_it_is_you(admin, asked, ADMIN, clock)
    assert not done.headers["Location"].startswith("/admin/jobs/") and jobs() == []
    clock.tick(STALE)
    admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    assert left not in [kept_id for kept_id, _ in kept_rows()]  # the next act kept cleared it


def test_retention_deletes_an_act_nobody_came_back_for(admin, incident, app, clock, runner):
    page = admin.get("/admin/incidents/acme-2026/import")
    clock.tick(STALE)
    upload(admin, page)
    clock.move(timedelta(minutes=14))
    first = runner.invoke(args=["retention", "run"])
    assert first.exit_code == 0, first.output
    assert len(kept_rows()) == 1  # still inside its fifteen minutes: it may yet be finished
    clock.move(timedelta(minutes=2))
    second = runner.invoke(args=["retention", "run"])
    assert second.exit_code == 0, second.output
    assert kept_rows() == []


def test_every_sensitive_act_asks_for_a_fresh_proof_first(admin, clock):
    clock.tick(STALE)
    token = csrf_from(admin.get("/staff/cases"))
    posts = (
        "/admin/staff/x/disable",
        "/admin/staff/x/end-sessions",
        "/admin/staff/x/reset-mfa",
        "/admin/incidents/x/import",
        "/admin/jobs/x/confirm",
        "/admin/incidents/x/campaign/send",
        "/admin/obligations/x/filing-pack",
        "/staff/cases/x/tools/resend-link",
        "/staff/cases/x/link",
        "/staff/customers/x/tools/clear-lock",
    )
    for path in posts:
        asked = admin.post(path, data={"csrf_token": token})
        assert asked.headers["Location"].startswith("/staff/reauth"), path
    for path in ("/admin/metrics.csv", "/admin/incidents/x/import"):
        assert admin.get(path).headers["Location"].startswith("/staff/reauth"), path


CUSTOMER = "c@example.com"
NEW_ADDRESS = "c.new.mailbox@example.com"


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, "agent.a@example.com", "agent", clock)
    return client


def test_a_kept_contact_change_does_not_leave_the_new_address_in_clear_on_disk(
    app, agent, incident, write_csv, clock
):
    """Finding P3 (DATA-02): an agent whose proof is older than five minutes POSTs
    /staff/cases/<id>/tools/correct-contact with a new email -> 302 to "Confirm it is you", and
    the form (the new address, the reason) is written as plain JSON under instance/kept/, where
    it stays until some later kept act happens to purge it. Personal data at rest is sealed
    everywhere else (and a file on one instance is not there for the next instance anyway)."""
    from pathlib import Path

    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Case
    from portal.services.imports import import_customers
    from portal.services.notices import queue_notices
    from tests.conftest import customer_row
    from tests.customer_flow import sign_in

    import_customers(incident, write_csv([customer_row(1, email=CUSTOMER, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    customer = app.test_client()
    sign_in(customer, CUSTOMER)
    page = customer.get("/me/cases")
    customer.post(
        "/me/cases",
        data={"csrf_token": csrf_from(page), "topic": "my_data", "body": "My email changed."},
    )
    path = f"/staff/cases/{db.session.scalars(select(Case)).one().public_id}"
    page = agent.get(path)
    agent.post(f"{path}/claim", data={"csrf_token": csrf_from(page)})
    clock.move(timedelta(minutes=6))  # the sign-in proof is now stale
    page = agent.get(path)
    asked = agent.post(
        f"{path}/tools/correct-contact",
        data={
            "csrf_token": csrf_from(page),
            "reason": "Caller Ann, date of birth checked",
            "email": NEW_ADDRESS,
            "phone": "",
        },
    )
    assert asked.status_code == 302 and "reauth" in asked.headers["Location"]
    kept = Path(app.instance_path) / "kept"
    in_clear = (
        [p.name for p in kept.glob("*") if NEW_ADDRESS.encode() in p.read_bytes()]
        if kept.exists()
        else []
    )
    assert in_clear == []
    # Kept in the database instead, sealed: neither the new address nor the reason in clear.
    ((_kept_id, payload),) = kept_rows()
    assert NEW_ADDRESS.encode() not in payload and b"date of birth" not in payload
    done = confirm_it_is_you(agent, asked, "agent.a@example.com", clock)
    assert done.headers["Location"].startswith(path)
    db.session.expire_all()
    assert [change.value for change in db.session.scalars(select(ContactChange))] == [NEW_ADDRESS]
    assert kept_rows() == []  # finished: nothing of it kept
