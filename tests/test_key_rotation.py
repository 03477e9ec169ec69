"""Rotating the data key as the README says loses nothing: every sealed column is declared, every
declared column is rotated, and after the old key is removed every feature still works."""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import LargeBinary, func, select

from portal.config import new_data_key
from portal.extensions import db, vault
from portal.models import Case, Customer, Job, KeptAct
from portal.models.base import Base
from portal.models.sealed import BlindIndex, Sealed, blind_index_columns, fields_of, sealed_columns
from portal.services import background
from portal.services.imports import import_customers
from portal.services.keys import stale_counts
from portal.services.notices import queue_notices
from tests.conftest import DATA_KEY, base_env, customer_row
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    sign_in,
    start_from_link,
    submit_code,
)
from tests.staff_flow import confirm_it_is_you, log_in, set_up
from tests.test_outbox import smtp_url
from tests.test_protection import enroll_in_browser, load_codes, offer_cli
from tests.test_support_desk import ask_for_help, post_reply

ANN = "ann@example.com"  # signs in, adds an authenticator app, enrolls in protection
BOB = "bob@example.com"  # has a code on its way when the key changes
BOB_PHONE = "+14155550102"
AGENT = "agent.k@example.com"


def test_every_sealed_looking_column_is_declared_so_rotation_covers_it():
    """A binary column named like sealed data must use the Sealed or BlindIndex type: rotation
    walks only the declared ones, so a hand-sealed column would be lost at the next rotation."""
    undeclared = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(("_sealed", "_index"))
        and isinstance(column.type, LargeBinary)
        and not isinstance(column.type, Sealed | BlindIndex)
    ]
    assert undeclared == []
    for column in sealed_columns():
        assert column.column in fields_of(column.model), f"{column} has no SealedField"
    for index in blind_index_columns():
        assert index.type.source in fields_of(index.model).values(), f"{index} reads nothing"


def enroll(client, address: str) -> pyotp.TOTP:
    """Add an authenticator app on /me/authenticator; return it."""
    page = client.get("/me/authenticator")
    client.post("/me/authenticator/setup", data={"csrf_token": csrf_from(page)})
    page = client.get("/me/authenticator")
    db.session.expire_all()
    customer = next(c for c in db.session.scalars(select(Customer)) if c.email == address)
    totp = pyotp.TOTP(customer.totp_secret)
    confirmed = client.post(
        "/me/authenticator/confirm", data={"csrf_token": csrf_from(page), "code": totp.now()}
    )
    assert confirmed.headers["Location"] == "/me/authenticator"
    return totp


def _every_sealed_value_opens() -> dict[str, int]:
    """Open every sealed value of every row through its model; return non-null values per column."""
    db.session.expire_all()
    seen: dict[str, int] = {}
    for column in sealed_columns():
        field = fields_of(column.model)[column.column]
        for row in db.session.scalars(select(column.model)):
            if getattr(row, column.column) is not None:
                getattr(row, field)  # raises DecryptionError if it cannot be opened
                key = f"{column.model.__tablename__}.{column.column}"
                seen[key] = seen.get(key, 0) + 1
    return seen


def test_rotating_then_removing_the_old_key_keeps_every_feature_working(
    app, runner, incident, write_csv, tmp_path, clock, smtp_server
):
    # --- everything that seals data, under the old key ---
    rows = [
        customer_row(1, email=ANN, phone="", data_classes="ssn:6789"),
        customer_row(2, email=BOB, phone=BOB_PHONE, data_classes="email_address"),
    ]
    import_customers(incident, write_csv(rows), actor="test")  # customers, exposures
    queue_notices(incident, actor="test")  # outbox rows
    offer_cli(runner)
    loaded = load_codes(runner, tmp_path, ["K-0001-XYZ", "K-0002-XYZ", "K-0003-XYZ"])
    assert "Loaded 3 codes" in loaded.output

    ann = app.test_client()
    sign_in(ann, ANN)
    totp = enroll(ann, ANN)  # the customer's authenticator seed
    enroll_in_browser(ann)  # an activation code handed out
    assert "K-0001-XYZ" in ann.get("/me/protection").get_data(as_text=True)

    bob = app.test_client()
    start_from_link(bob, link_path(BOB))  # a challenge with its code sealed for "resend"
    bob_code = code_sent_to(BOB)

    staff = app.test_client()
    set_up(app, staff, AGENT, "agent", clock)  # staff email and authenticator seed
    ask_for_help(
        app.test_client(),
        "+1 415 555 0177",
        topic="callback",
        callback_window="Weekdays after 5 pm",
        body="Please call me about the letter.",
    )  # a case with contact, callback and a message
    case = db.session.scalars(select(Case)).one()
    post_reply(staff, case, "We will call you tomorrow evening.")
    case_path = f"/staff/cases/{case.public_id}"
    # A contact change held for a second staff member (its new address is sealed).
    from portal.services import contact_changes
    from portal.services.customers import find_by_email
    from portal.services.staff import by_email

    (ann_row,) = find_by_email(ANN)
    # A postal address for her printed letter (four sealed columns).
    ann_row.address_line1, ann_row.address_line2 = "1 Main Street", "Apt 2"
    ann_row.city, ann_row.postal_code = "San Francisco", "94110"
    held = contact_changes.request_change(
        by_email(AGENT), ann_row, None, "email", "ann.new@example.net", "Old mailbox closed"
    )
    db.session.commit()
    held_id = held.id
    job = background.submit(
        "send_notices", {"incident_id": incident.id, "actor": "test"}, actor="test"
    )
    db.session.commit()
    job_id = job.id

    # A tool posted on a stale proof: the act is kept, sealed, while the agent proves it again.
    from portal.models import StaffSession

    for staff_session in db.session.scalars(select(StaffSession)):
        staff_session.reauth_at = clock.now() - timedelta(minutes=6)
    db.session.commit()
    page = staff.get(case_path)
    kept = staff.post(
        f"{case_path}/tools/correct-contact",
        data={
            "csrf_token": csrf_from(page),
            "reason": "Caller checked",
            "email": "caller@example.net",
            "phone": "",
        },
    )
    assert "/staff/reauth" in kept.headers["Location"]

    before = _every_sealed_value_opens()
    declared = {f"{c.model.__tablename__}.{c.column}" for c in sealed_columns()}
    # Every declared column holds something here: a new one must be exercised by this test.
    assert declared - set(before) == set(), "exercise the new sealed column in this test"

    # --- the README's rotation: new key first, rotate, then remove the old key ---
    newest = new_data_key()
    vault.load_keys([newest, DATA_KEY])
    result = runner.invoke(args=["keys", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "Nothing is sealed with an older key" in result.output
    assert "staff_member: checked 1, re-sealed 1" in result.output  # progress, table by table
    vault.load_keys([newest])
    db.session.expire_all()

    assert set(stale_counts().values()) == {0}
    assert _every_sealed_value_opens() == before
    from portal.models import ContactChange

    assert db.session.get(ContactChange, held_id).value == "ann.new@example.net"

    # The act kept under the old key is finished after the proof, not lost.
    finished = confirm_it_is_you(staff, kept, AGENT, clock)
    assert "no longer kept" not in staff.get(finished.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(KeptAct)) == 0

    # Staff sign in (their address is found by its re-keyed index, their seed opens).
    clock.tick(60)
    signed_in = log_in(app.test_client(), AGENT, clock)
    assert signed_in.status_code == 302 and "/staff/code" not in signed_in.headers["Location"]

    # The case thread reads, with the caller's number and the reply.
    page = staff.get(case_path).get_data(as_text=True)
    assert "Please call me about the letter." in page
    assert "We will call you tomorrow evening." in page
    assert "+14155550177" in page and "Weekdays after 5 pm" in page

    # The customer signs in with the authenticator, and the activation code still shows.
    later = app.test_client()
    form = later.get("/signin")
    code = totp.at(clock.now())
    answer = later.post("/signin", data={"csrf_token": csrf_from(form), "email": ANN, "code": code})
    assert answer.headers["Location"] == "/me"
    assert "K-0001-XYZ" in later.get("/me/protection").get_data(as_text=True)
    assert "6789" in later.get("/me").get_data(as_text=True)  # the exposure's fragment

    # The code on its way still works; "resend" sends the same one again.
    page = bob.get("/verify")
    bob.post("/verify/resend", data={"csrf_token": csrf_from(page)})
    assert code_sent_to(BOB) == bob_code
    assert submit_code(bob, bob_code).headers["Location"] == "/me"

    # The queued job runs (its payload opens) ...
    assert runner.invoke(args=["jobs", "work", "--once"]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(Job, job_id).status == "done"

    # ... and the outbox delivers what was queued under the old key.
    sink, controller = smtp_server
    app.config["SMTP_URL"] = smtp_url(controller)
    sent = runner.invoke(args=["outbox", "work", "--once"])
    assert sent.exit_code == 0, sent.output
    delivered = [email.message_from_bytes(e.content) for e in sink.messages]
    assert ANN in {m["To"] for m in delivered}
    assert any(re.search(r"Notice of Data Breach", m["Subject"] or "") for m in delivered), [
        m["Subject"] for m in delivered
    ]
    customers = db.session.scalar(select(func.count()).select_from(Customer))
    assert customers == 2


@pytest.mark.slow
def test_a_rotation_killed_half_way_carries_on_when_run_again(
    app, runner, incident, write_csv, database_url
):
    rows = [customer_row(n) for n in range(1, 301)]
    import_customers(incident, write_csv(rows), actor="test")
    db.session.commit()
    newest = new_data_key()
    env = {
        **os.environ,
        **base_env(database_url, PORTAL_DATA_KEYS=f"{newest},{DATA_KEY}"),
        "PYTHONUNBUFFERED": "1",  # see each batch's progress line as it happens
    }
    portal = os.path.join(os.path.dirname(sys.executable), "portal")
    child = subprocess.Popen(
        [portal, "keys", "rotate", "--batch-size", "10"], env=env, stdout=subprocess.PIPE, text=True
    )
    for line in child.stdout:
        if line.startswith("  customer: checked 30,"):  # three batches of customers committed
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    vault.load_keys([newest, DATA_KEY])
    db.session.expire_all()
    left = stale_counts()
    assert 0 < left["customer"] < 300  # part done, part not

    again = runner.invoke(args=["keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert f"customer {left['customer']}," in again.output  # only what was left
    vault.load_keys([newest])
    db.session.expire_all()
    assert len(_every_sealed_value_opens()) >= 4
    assert sorted(c.email for c in db.session.scalars(select(Customer))) == sorted(
        r["email"] for r in rows
    )
