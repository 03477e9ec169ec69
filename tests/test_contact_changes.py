"""A contact change made by staff does not hand over the account (issue 12, finding 2).

The attack: one agent, re-authenticated, corrects a customer's email to their own and then sends
a fresh link (or a one-time sign-in): the link and the code used to go to the agent.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Case, ContactChange, Customer
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import BASE_URL, customer_row
from tests.customer_flow import code_sent_to, csrf_from, link_path, messages_to, sign_in
from tests.staff_flow import log_in, reauth, set_up

AGENT = "agent.a@example.com"
SECOND = "agent.b@example.com"
CUSTOMER = "c@example.com"
THE_AGENTS_OWN = "mallory@example.net"  # the attacker's mailbox
NEW = "c.new@example.com"  # a customer's real new mailbox
REASON = "Customer called: old mailbox closed"


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, AGENT, "agent", clock)
    return client


@pytest.fixture
def case_path(app, incident, write_csv):
    """A customer (no phone on file) with a case of theirs; the staff page of that case."""
    import_customers(
        incident,
        write_csv([customer_row(1, email=CUSTOMER, phone="", data_classes="ssn:1234")]),
        actor="test",
    )
    queue_notices(incident, actor="test")
    client = app.test_client()
    sign_in(client, CUSTOMER)
    page = client.get("/me/cases")
    client.post(
        "/me/cases",
        data={"csrf_token": csrf_from(page), "topic": "my_data", "body": "My email changed."},
    )
    return f"/staff/cases/{db.session.scalars(select(Case)).one().public_id}"


def tool(client, path: str, name: str, **fields) -> str:
    page = client.get(path)
    data = {"csrf_token": csrf_from(page), "reason": REASON, **fields}
    return client.post(f"{path}/tools/{name}", data=data, follow_redirects=True).get_data(
        as_text=True
    )


def the_customer() -> Customer:
    db.session.expire_all()
    return db.session.scalars(select(Customer)).one()


def the_change() -> ContactChange:
    db.session.expire_all()
    return db.session.scalars(select(ContactChange)).one()


def opens_the_account(address: str) -> list[str]:
    """Every line mailed to address that would let its reader in: a notice or sign-in link."""
    return [
        line
        for message in messages_to(address)
        for line in message.text.splitlines()
        if line.startswith((BASE_URL + "/a/", BASE_URL + "/assisted/"))
    ]


def link_in(address: str, kind: str) -> str:
    """The path of the newest /contact/<kind>/ link mailed to address."""
    for message in reversed(messages_to(address)):
        for line in message.text.splitlines():
            if line.startswith(f"{BASE_URL}/contact/{kind}/"):
                return line.removeprefix(BASE_URL)
    raise AssertionError(f"no {kind} link was mailed to {address}")


def enter_code(app, address: str):
    """The owner of the new address opens the confirm page and types the code sent there."""
    visitor = app.test_client()
    path = link_in(address, "confirm")
    assert visitor.get(path).status_code == 200
    page = visitor.get(path)  # a GET spends nothing: a mail scanner may open it first
    return visitor.post(path, data={"csrf_token": csrf_from(page), "code": code_sent_to(address)})


def approve(client, email: str, clock, change: ContactChange):
    back = "/staff/contact-changes"
    reauth(client, email, clock, back)
    page = client.get(back)
    return client.post(
        f"/staff/contact-changes/{change.public_id}/approve",
        data={"csrf_token": csrf_from(page), "reason": "Called them back on file", "next": back},
        follow_redirects=True,
    ).get_data(as_text=True)


def test_an_agent_changing_the_email_to_their_own_gets_nothing_that_opens_the_account(
    app, agent, clock, case_path
):
    reauth(agent, AGENT, clock, case_path)
    asked = tool(agent, case_path, "correct-contact", email=THE_AGENTS_OWN)
    assert "a second staff member" in asked
    assert the_customer().email == CUSTOMER  # nothing changed on the customer yet
    # The agent even proves the address (it is theirs), then tries every way to send a link.
    assert b"this address is confirmed" in enter_code(app, THE_AGENTS_OWN).data
    refused = tool(agent, case_path, "resend-link")
    assert "no link or code can be sent yet" in refused
    assert "no link or code can be sent yet" in tool(agent, case_path, "confirm-identity")
    fresh = app.test_client()
    page = fresh.get("/link/new")
    fresh.post("/link/new", data={"csrf_token": csrf_from(page), "email": THE_AGENTS_OWN})
    from tests.customer_flow import run_jobs

    run_jobs(app)
    assert opens_the_account(THE_AGENTS_OWN) == []
    assert the_customer().email == CUSTOMER
    # What the agent's address did get: the confirmation, whose code opens nothing else.
    assert [m.row.subject for m in messages_to(THE_AGENTS_OWN)] == [
        "Confirm your new contact details for Example Corp"
    ]


def test_the_address_on_file_is_told_with_a_way_to_stop_it_and_no_secret(
    app, agent, clock, case_path
):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=THE_AGENTS_OWN)
    told = [m for m in messages_to(CUSTOMER) if "change to your account" in m.row.subject]
    assert len(told) == 1
    text = told[0].text + told[0].html
    assert "asked to change the email address on your account" in text
    assert f"{BASE_URL}/contact/not-me/" in text
    assert "mallory" not in text  # not the new address: the old mailbox may not be theirs
    assert not re.search(r"(?<!\d)\d{6}(?!\d)", told[0].text)  # and no code
    assert code_sent_to(THE_AGENTS_OWN) not in text


def test_this_was_not_me_cancels_the_change_and_escalates_the_case(app, agent, clock, case_path):
    page = agent.get(case_path)
    agent.post(f"{case_path}/claim", data={"csrf_token": csrf_from(page)})
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=THE_AGENTS_OWN)
    path = link_in(CUSTOMER, "not-me")
    owner = app.test_client()
    assert owner.get(path).status_code == 200
    assert the_change().cancelled_at is None  # a GET spends nothing
    page = owner.get(path)
    stopped = owner.post(path, data={"csrf_token": csrf_from(page)})
    assert b"The change is stopped" in stopped.data
    change = the_change()
    assert change.cancelled_at is not None and change.cancelled_by == "customer"
    case = db.session.scalars(select(Case)).one()
    assert case.assignee_id is None  # off the desk of the agent who asked for it
    assert case.due_at <= clock.now()  # top of the queue
    # The agent's address cannot confirm it any more, and it never applies.
    assert app.test_client().get(link_in(THE_AGENTS_OWN, "confirm")).status_code == 404
    clock.move(timedelta(hours=25))
    log_in(agent, AGENT, clock)
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "resend-link")
    assert the_customer().email == CUSTOMER
    assert opens_the_account(THE_AGENTS_OWN) == []
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "contact_change.disowned" in actions and "case.escalated" in actions


def test_a_second_staff_member_approves_and_the_change_applies(app, agent, clock, case_path):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    enter_code(app, NEW)
    assert the_customer().email == CUSTOMER  # proved, still waiting for a second person
    shown = agent.get(case_path).get_data(as_text=True)
    assert "Waiting for a second staff member" in shown
    assert "You asked for this change: a second staff member must approve it." in shown
    # The same agent cannot approve their own change, even by posting the form by hand.
    refused = approve(agent, AGENT, clock, the_change())
    assert "A second staff member must approve a change you asked for." in refused
    assert the_customer().email == CUSTOMER
    second = app.test_client()
    set_up(app, second, SECOND, "agent", clock)
    assert "Done, and recorded." in approve(second, SECOND, clock, the_change())
    assert the_customer().email == NEW
    approved = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "contact_change.approved")
    ).one()
    assert (
        approved.actor
        != db.session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "contact_change.requested")
        ).one()
    )
    # Approved by two people: a link may now go to the new address.
    assert "Done, and recorded." in tool(agent, case_path, "resend-link")
    assert link_path(NEW).startswith("/a/")


def test_after_the_wait_a_proved_change_applies_by_itself(app, agent, clock, case_path):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    enter_code(app, NEW)
    clock.move(timedelta(hours=23))
    log_in(agent, AGENT, clock)
    reauth(agent, AGENT, clock, case_path)
    assert "no link or code can be sent yet" in tool(agent, case_path, "resend-link")
    assert the_customer().email == CUSTOMER
    clock.move(timedelta(hours=1, minutes=1))
    log_in(agent, AGENT, clock)
    reauth(agent, AGENT, clock, case_path)
    assert "Done, and recorded." in tool(agent, case_path, "resend-link")
    assert the_customer().email == NEW
    assert link_path(NEW).startswith("/a/")
    assert the_change().approved_at is None and the_change().applied_at is not None


def test_the_worker_applies_a_proved_change_when_its_wait_is_over(app, agent, clock, case_path):
    from tests.customer_flow import run_jobs

    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    enter_code(app, NEW)
    run_jobs(app)
    assert the_customer().email == CUSTOMER
    clock.move(timedelta(hours=24, minutes=1))
    run_jobs(app)
    assert the_customer().email == NEW
    applied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "contact_change.applied")
    ).one()
    assert applied.actor == "system:jobs"


def test_a_change_never_proved_by_its_address_never_applies(app, agent, clock, case_path):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=THE_AGENTS_OWN)
    clock.move(timedelta(hours=25))
    log_in(agent, AGENT, clock)
    reauth(agent, AGENT, clock, case_path)
    assert "Done, and recorded." in tool(agent, case_path, "resend-link")
    assert the_customer().email == CUSTOMER  # the link went to the address on file
    assert opens_the_account(THE_AGENTS_OWN) == []
    assert "Expired" in agent.get(case_path).get_data(as_text=True)


def test_resend_link_refuses_while_a_change_is_recent(app, agent, clock, case_path):
    before = link_path(CUSTOMER)
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    refused = tool(agent, case_path, "resend-link")
    assert "changed by staff less than 24 hours ago" in refused
    assert link_path(CUSTOMER) == before  # nothing sent, the old link still the newest
    assert opens_the_account(NEW) == []


def test_wrong_codes_end_the_confirmation_and_change_nothing(app, agent, clock, case_path):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    path = link_in(NEW, "confirm")
    right = code_sent_to(NEW)
    wrong = "000000" if right != "000000" else "111111"
    visitor = app.test_client()
    for _ in range(4):
        page = visitor.get(path)
        answer = visitor.post(path, data={"csrf_token": csrf_from(page), "code": wrong})
        assert answer.status_code == 422 and b"That code is not right" in answer.data
    page = visitor.get(path)
    assert (
        visitor.post(path, data={"csrf_token": csrf_from(page), "code": wrong}).status_code == 404
    )
    assert visitor.get(path).status_code == 404
    assert the_change().proved_at is None and the_customer().email == CUSTOMER


def test_a_phone_change_sends_its_code_by_text_and_tells_the_email_on_file(
    app, agent, clock, case_path
):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", phone="+14155550199")
    sms = messages_to("+14155550199")
    assert len(sms) == 1 and "/contact/confirm/" in sms[0].text
    told = [m for m in messages_to(CUSTOMER) if "change to your account" in m.row.subject]
    assert "change the phone number on your account" in told[0].text
    assert the_customer().phone is None


def test_the_agents_see_every_change_waiting(app, agent, clock, case_path):
    reauth(agent, AGENT, clock, case_path)
    tool(agent, case_path, "correct-contact", email=NEW)
    listed = agent.get("/staff/contact-changes").get_data(as_text=True)
    assert "Waiting for the new address to enter its code" in listed
    assert NEW not in listed  # masked
    assert "C-00001" in listed
