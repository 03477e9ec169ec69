"""The support desk never dead-ends: find the customer, link a stranger's request to them, let a
locked customer in, answer someone who cannot sign in, and call back those who ask."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Case, Customer, Notice
from portal.services import reference_codes, tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import BASE_URL, customer_row
from tests.customer_flow import (
    csrf_from,
    link_path,
    messages_to,
    sign_in,
    start_from_link,
    submit_code,
)
from tests.staff_flow import confirm_it_is_you, set_up

ANN = "ann@example.com"
BOB = "bob@example.com"
BOB_PHONE = "+14155550102"
AGENT = "agent.a@example.com"


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [
        customer_row(1, full_name="Ann Example", email=ANN, phone="", data_classes="ssn:6789"),
        customer_row(2, full_name="Bob Müller", email=BOB, phone=BOB_PHONE),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    return rows


@pytest.fixture
def agent(app, clock):
    client = app.test_client()
    set_up(app, client, AGENT, "agent", clock)
    return client


def customer(email: str) -> Customer:
    db.session.expire_all()
    return next(c for c in db.session.scalars(select(Customer)) if c.email == email)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def search(client, query: str, kind: str = "", case: str = ""):
    page = client.get("/staff/customers")
    return client.post(
        "/staff/customers",
        data={"csrf_token": csrf_from(page), "kind": kind, "query": query, "case": case},
    )


def ask_for_help(client, contact: str, *, body: str = "My old phone number is gone.", **extra):
    page = client.get("/help")
    data = {
        "csrf_token": csrf_from(page),
        "topic": "cannot_verify",
        "name": "Ann Example",
        "contact": contact,
        "reference": "",
        "body": body,
    }
    data.update(extra)
    return client.post("/help", data=data)


def post_reply(agent, case: Case, body: str):
    path = f"/staff/cases/{case.public_id}"
    page = agent.get(path)
    return agent.post(
        f"{path}/messages", data={"csrf_token": csrf_from(page), "body": body, "kind": "reply"}
    )


def help_link(address: str) -> str:
    """The path of the newest help-case link sent to address (email or text message)."""
    for message in reversed(messages_to(address)):
        match = re.search(re.escape(BASE_URL) + r"(/help/case/[^\s<\"]+)", message.text)
        if match:
            return match.group(1)
    raise AssertionError(f"no help-case link was sent to {address}")


def the_case() -> Case:
    db.session.expire_all()
    return db.session.scalars(select(Case).order_by(Case.id.desc())).first()


# --- finding a customer ---


def test_an_agent_finds_a_customer_by_email_phone_reference_or_name(app, agent, notified):
    ann_id = customer(ANN).public_id
    code = db.session.scalars(select(Notice).where(Notice.customer_id == customer(ANN).id)).one()
    typed = {
        "email": "  ANN@Example.com ",
        "reference": reference_codes.display(code.reference_code).lower(),
        "name": "  ann   EXAMPLE ",
    }
    for kind, query in typed.items():
        for chosen in (kind, ""):  # said explicitly, or guessed from what was typed
            page = search(agent, query, kind=chosen)
            assert page.status_code == 200, (kind, chosen)
            assert f"/staff/customers/{ann_id}" in page.get_data(as_text=True), (kind, chosen)
    page = search(agent, "+1 (415) 555-0102").get_data(as_text=True)
    assert f"/staff/customers/{customer(BOB).public_id}" in page
    assert "Bob Müller" in search(agent, "bob müller").get_data(as_text=True)

    # Contact points are masked in the list.
    listed = search(agent, "Ann Example", kind="name").get_data(as_text=True)
    assert "a•••@example.com" in listed and ANN not in listed

    nobody = search(agent, "nobody@example.com")
    assert nobody.status_code == 200 and b"Nobody matches exactly" in nobody.data
    assert search(agent, "not an address", kind="email").status_code == 422


def test_every_search_is_recorded_without_what_was_typed(app, agent, notified):
    search(agent, ANN)
    search(agent, "Bob Müller", kind="name")
    search(agent, "nobody@example.com")
    recorded = events("customer.search")
    assert [json.loads(e.details)["kind"] for e in recorded] == ["email", "name", "email"]
    assert [json.loads(e.details)["results"] for e in recorded] == [1, 1, 0]
    assert all(e.actor.startswith("staff:") for e in recorded)
    for event in recorded:
        text = " ".join([event.actor, event.subject_id, event.details]).lower()
        for typed in ("ann@", "example.com", "bob", "müller", "nobody"):
            assert typed not in text


def test_only_agents_and_admins_may_search_or_open_a_customer_record(app, agent, clock, notified):
    record = f"/staff/customers/{customer(ANN).public_id}"
    signed_in = app.test_client()
    sign_in(signed_in, ANN)
    for client in (app.test_client(), signed_in):
        assert client.get("/staff/customers").headers["Location"] == "/staff/login"
        assert client.get(record).headers["Location"] == "/staff/login"
        token = csrf_from(signed_in.get("/me"))
        response = client.post("/staff/customers", data={"csrf_token": token, "query": ANN})
        assert response.status_code in (302, 400)
        assert response.status_code == 400 or response.headers["Location"] == "/staff/login"
    assert events("customer.search") == []
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    assert b"/staff/customers/" in search(admin, ANN).data
    assert admin.get(record).status_code == 200
    assert agent.get(record).status_code == 200
    assert len(events("customer.viewed")) == 2
    assert agent.get("/staff/customers/nosuchcustomer").status_code == 404


def test_older_rows_get_their_lookup_indexes_on_re_import_or_key_rotation(
    app, agent, runner, incident, write_csv, notified
):
    def forget_indexes():
        for c in db.session.scalars(select(Customer)):
            c.name_index = c.phone_index = None  # as rows imported before the indexes existed
        db.session.commit()

    forget_indexes()
    assert b"Nobody matches" in search(agent, "Ann Example", kind="name").data
    import_customers(incident, write_csv(notified), actor="test")  # the same file, again
    assert b"Nobody matches" not in search(agent, "Ann Example", kind="name").data
    forget_indexes()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert b"Nobody matches" not in search(agent, BOB_PHONE, kind="phone").data


# --- a locked customer, let in from their record ---


def lock_out(app, address: str) -> None:
    client = app.test_client()
    for _ in range(2):
        start_from_link(client, link_path(address))
        for _ in range(5):
            response = submit_code(client, "000000")
    assert response.headers["Location"] == "/locked"


def test_a_locked_customer_found_by_lookup_is_let_in_by_an_agent(app, agent, clock, notified):
    lock_out(app, ANN)
    listed = search(agent, ANN).get_data(as_text=True)
    assert "locked" in listed
    record = f"/staff/customers/{customer(ANN).public_id}"
    page = agent.get(record)
    assert b"Codes are locked for this customer" in page.data

    clock.tick(6 * 60)  # the sign-in's proof is now too old for a sensitive act
    asked = agent.post(
        f"{record}/tools/clear-lock",
        data={"csrf_token": csrf_from(page), "reason": "Called in, locked out"},
    )
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert customer(ANN).verification_locked_at is not None  # nothing happened yet
    # The password and a new code, and the lock is cleared as asked: no reason typed again.
    assert confirm_it_is_you(agent, asked, AGENT, clock).headers["Location"] == record
    assert customer(ANN).verification_locked_at is None

    page = agent.get(record)
    no_reason = agent.post(
        f"{record}/tools/confirm-identity", data={"csrf_token": csrf_from(page), "reason": ""}
    )
    assert no_reason.status_code == 302 and events("agent.identity_confirmed") == []
    done = agent.post(
        f"{record}/tools/confirm-identity",
        data={
            "csrf_token": csrf_from(page),
            "reason": "Checked date of birth and letter code by phone",
        },
    )
    assert done.headers["Location"] == record

    mail = [m for m in messages_to(ANN) if "sign-in link" in m.row.subject][-1]
    path = next(line for line in mail.text.splitlines() if "/assisted/" in line)
    path = path.removeprefix(BASE_URL)
    visitor = app.test_client()
    page = visitor.get(path)
    assert visitor.post(path, data={"csrf_token": csrf_from(page)}).headers["Location"] == "/me"
    assert visitor.get("/me").status_code == 200

    cleared = events("agent.lock_cleared")
    assert len(cleared) == 1 and cleared[0].subject_id == customer(ANN).public_id
    assert "Called in, locked out" in cleared[0].details
    assert len(events("agent.identity_confirmed")) == 1


def test_from_a_record_an_agent_cannot_change_where_sign_in_messages_go(
    app, agent, clock, notified
):
    record = f"/staff/customers/{customer(ANN).public_id}"
    page = agent.get(record)
    assert b"Correct contact details" not in page.data
    moved = agent.post(
        f"{record}/tools/correct-contact",
        data={"csrf_token": csrf_from(page), "reason": "Caller says so", "email": "x@evil.test"},
    )
    assert moved.status_code == 404
    assert customer(ANN).email == ANN


def test_a_record_shows_an_agent_only_the_cases_they_may_work(app, agent, clock, notified):
    from portal.models import StaffMember
    from portal.services import support_desk

    other = app.test_client()
    set_up(app, other, "agent.b@example.com", "agent", clock)
    theirs = support_desk.open_case_for(
        db.session.scalars(select(StaffMember).order_by(StaffMember.id.desc())).first(),
        customer(ANN),
        "my_data",
        "Agent B's call.",
    )
    db.session.commit()
    assert theirs.assignee.email == "agent.b@example.com"
    page = agent.get(f"/staff/customers/{customer(ANN).public_id}").get_data(as_text=True)
    assert theirs.public_id not in page


def test_an_agent_opens_a_case_on_a_customers_behalf(app, agent, notified):
    record = f"/staff/customers/{customer(ANN).public_id}"
    page = agent.get(record)
    assert b"No cases yet" in page.data
    opened = agent.post(
        f"{record}/cases",
        data={
            "csrf_token": csrf_from(page),
            "topic": "cannot_finish",
            "body": "Caller could not finish the password reset.",
        },
    )
    case = the_case()
    assert opened.headers["Location"] == f"/staff/cases/{case.public_id}"
    assert case.customer_id == customer(ANN).id and case.assignee.email == AGENT
    assert case.public_id in agent.get(record).get_data(as_text=True)
    ann = app.test_client()
    sign_in(ann, ANN)
    assert case.public_id in ann.get("/me/cases").get_data(as_text=True)
    assert b"could not finish" not in ann.get(f"/me/cases/{case.public_id}").data  # a note


# --- a request from someone not signed in, linked to the customer it is about ---


def test_a_call_back_number_from_a_stranger_stays_marked_after_linking(app, agent, clock, notified):
    ask_for_help(
        app.test_client(),
        "bob.new@example.net",
        topic="callback",
        callback_phone="+447700900123",
        callback_window="evenings",
    )
    case = the_case()
    staff_path = f"/staff/cases/{case.public_id}"
    found = search(agent, BOB, kind="email", case=case.public_id)
    agent.post(
        f"{staff_path}/link",
        data={
            "csrf_token": csrf_from(found),
            "customer": customer(BOB).public_id,
            "identity_checked": "y",
            "reason": "Answered questions on the letter",
        },
    )
    assert the_case().customer_id == customer(BOB).id
    page = agent.get(staff_path).get_data(as_text=True)
    assert "Call back on +447700900123" in page
    assert "not the one on the customer's record" in page


def test_an_unverified_request_is_linked_to_its_customer_after_an_identity_check(
    app, agent, clock, notified
):
    ask_for_help(app.test_client(), "ann.new@example.net")
    case = the_case()
    staff_path = f"/staff/cases/{case.public_id}"
    page = agent.get(staff_path)
    assert b"Whose request is this?" in page.data
    assert b"Look up the contact they gave" in page.data
    assert b"Look up the name they gave" in page.data
    assert b"/tools/" not in page.data  # no tools before the case is someone's

    found = search(agent, "Ann Example", kind="name", case=case.public_id)
    ann_id = customer(ANN).public_id
    assert f'name="customer" value="{ann_id}"' in found.get_data(as_text=True)

    def link(**fields):
        data = {"csrf_token": csrf_from(found), "customer": ann_id}
        data.update(fields)
        return agent.post(f"{staff_path}/link", data=data)

    link(reason="Answered questions on the letter")  # the identity check is not ticked
    assert the_case().customer_id is None
    link(identity_checked="y", reason="")
    assert the_case().customer_id is None
    clock.tick(6 * 60)
    asked = link(identity_checked="y", reason="Answered questions on the letter")
    assert asked.headers["Location"].startswith("/staff/reauth")
    assert the_case().customer_id is None
    done = confirm_it_is_you(agent, asked, AGENT, clock)  # the link is made as it was asked
    assert done.headers["Location"] == staff_path
    case = the_case()
    assert case.customer_id == customer(ANN).id and not case.unverified
    linked = events("case.linked")
    assert len(linked) == 1 and linked[0].subject_id == ann_id
    assert case.public_id in linked[0].details

    page = agent.get(staff_path)
    assert b"Linked to customer C-00001" in page.data
    assert b"/tools/confirm-identity" in page.data  # the tools now work on it
    agent.post(
        f"{staff_path}/tools/confirm-identity",
        data={"csrf_token": csrf_from(page), "reason": "Checked by phone"},
    )
    assert any("sign-in link" in m.row.subject for m in messages_to(ANN))
    assert not messages_to("ann.new@example.net")  # nothing went to the unproven address

    again = link(identity_checked="y", reason="Answered questions on the letter")
    assert again.status_code == 302 and len(events("case.linked")) == 1


# --- the answer reaches whoever wrote ---


def test_a_reply_to_a_help_request_reaches_its_writer_with_a_link_to_that_case(
    app, agent, notified
):
    writer = app.test_client()
    ask_for_help(writer, "ann.new@example.net")
    case = the_case()
    post_reply(agent, case, "We found your record; please call us back.")
    mail = messages_to("ann.new@example.net")
    assert len(mail) == 1
    assert "please call us back" not in mail[0].text + mail[0].html  # the answer stays behind
    assert "Ann" not in mail[0].text + mail[0].row.subject  # nothing personal
    path = help_link("ann.new@example.net")
    assert case.public_id not in path

    page = writer.get(path)
    assert page.status_code == 200
    assert b"please call us back" in page.data and b"My old phone number is gone." in page.data
    assert writer.get(path).status_code == 200  # reading spends nothing
    answered = writer.post(
        path, data={"csrf_token": csrf_from(page), "body": "I will call at noon."}
    )
    assert answered.headers["Location"] == path
    assert b"I will call at noon." in writer.get(path).data
    assert the_case().status == "open"  # back to the agents
    assert b"I will call at noon." in agent.get(f"/staff/cases/{case.public_id}").data
    assert len(events("case.help_replied")) == 1


def test_a_writer_who_gave_a_phone_number_gets_the_link_by_text(app, agent, notified):
    ask_for_help(app.test_client(), "+44 20 7946 0018")
    post_reply(agent, the_case(), "We will call you tomorrow.")
    texts = messages_to("+442079460018")
    assert len(texts) == 1 and texts[0].row.kind == "sms"
    assert "tomorrow" not in texts[0].text
    assert app.test_client().get(help_link("+442079460018")).status_code == 200


def test_a_help_case_link_opens_that_case_alone_and_nothing_else(app, agent, clock, notified):
    ask_for_help(app.test_client(), "first@example.net", body="First request text.")
    first = the_case()
    ask_for_help(app.test_client(), "second@example.net", body="Second request text.")
    second = the_case()
    post_reply(agent, first, "Answer one.")
    post_reply(agent, second, "Answer two.")
    visitor = app.test_client()
    old = help_link("first@example.net")
    assert b"Second request text." not in visitor.get(old).data

    # Replaced: a second answer sends a new link and the older one stops working.
    post_reply(agent, first, "Answer one, again.")
    new = help_link("first@example.net")
    assert new != old
    assert visitor.get(old).status_code == 404
    page = visitor.get(new)
    assert page.status_code == 200
    refused = visitor.post(old, data={"csrf_token": csrf_from(page), "body": "Sneaky."})
    assert refused.status_code == 404
    assert b"Sneaky." not in agent.get(f"/staff/cases/{first.public_id}").data

    # Tampered.
    assert visitor.get(new[:-3] + ("aaa" if not new.endswith("aaa") else "bbb")).status_code == 404

    # Another case: a genuinely signed token naming the second case with the first's nonce.
    db.session.expire_all()
    first, second = db.session.get(Case, first.id), db.session.get(Case, second.id)
    forged = tokens.issue(tokens.Purpose.HELP_CASE, second.public_id, first.help_link_nonce)
    assert visitor.get(f"/help/case/{forged}").status_code == 404

    # Wrong purpose: a notice link's token here, and this token on the other links.
    notice_token = link_path(ANN).removeprefix("/a/")
    assert visitor.get(f"/help/case/{notice_token}").status_code == 404
    help_token = new.removeprefix("/help/case/")
    assert visitor.get(f"/a/{help_token}").status_code == 404
    assert visitor.get(f"/assisted/{help_token}").status_code == 404

    # Expired: two weeks and a minute later; then back to today.
    clock.move(timedelta(days=14, minutes=1))
    expired = visitor.get(new)
    assert expired.status_code == 410 and b"expired" in expired.data
    clock.move(-timedelta(days=14, minutes=1))
    assert visitor.get(new).status_code == 200

    # Linked to a customer: the conversation is now behind that customer's sign-in.
    staff_path = f"/staff/cases/{first.public_id}"
    found = search(agent, ANN, case=first.public_id)
    agent.post(
        f"{staff_path}/link",
        data={
            "csrf_token": csrf_from(found),
            "customer": customer(ANN).public_id,
            "identity_checked": "y",
            "reason": "Checked by phone",
        },
    )
    db.session.expire_all()
    assert db.session.get(Case, first.id).customer_id == customer(ANN).id
    assert visitor.get(new).status_code == 404


# --- call me back ---


def test_a_callback_request_is_due_sooner_and_its_number_is_sealed(app, agent, notified):
    ask_for_help(app.test_client(), "slow@example.net")  # can't verify: due in 8 hours
    asked = ask_for_help(
        app.test_client(),
        "+1 415 555 0199",
        topic="callback",
        callback_window="Weekdays 9 to 11 am Pacific",
        body="Please call me about my card.",
    )
    assert asked.headers["Location"] == "/help/sent"
    case = the_case()
    assert case.topic == "callback" and case.unverified
    assert case.due_at - case.created_at == timedelta(hours=4)
    assert b"+14155550199" not in case.callback_sealed and b"Weekdays" not in case.callback_sealed

    queue = agent.get("/staff/cases").get_data(as_text=True)
    assert "Please call me back" in queue
    assert queue.index(case.public_id) < queue.index(the_case_of("slow@example.net"))
    page = agent.get(f"/staff/cases/{case.public_id}").get_data(as_text=True)
    assert "+14155550199" in page and "Weekdays 9 to 11 am Pacific" in page
    filtered = agent.get("/staff/cases?topic=callback").get_data(as_text=True)
    assert case.public_id in filtered and the_case_of("slow@example.net") not in filtered

    refused = ask_for_help(
        app.test_client(), "ann.new@example.net", topic="callback", callback_window="Noon"
    )
    assert refused.status_code == 422 and b"the country code" in refused.data  # no number
    refused = ask_for_help(
        app.test_client(), "ann.new@example.net", topic="callback", callback_phone=BOB_PHONE
    )
    assert refused.status_code == 422 and b"when we may call" in refused.data


def the_case_of(contact: str) -> str:
    from portal.services.cases import contact_of

    db.session.expire_all()
    return next(
        c.public_id
        for c in db.session.scalars(select(Case))
        if (contact_of(c) or {}).get("contact") == contact
    )


def test_a_signed_in_customer_asks_for_a_call_back(app, agent, notified):
    ann = app.test_client()
    sign_in(ann, ANN)

    def ask(**fields):
        page = ann.get("/me/cases")
        data = {"csrf_token": csrf_from(page), "topic": "callback", "body": "Call me please."}
        data.update(fields)
        return ann.post("/me/cases", data=data)

    refused = ask(callback_window="After 5 pm")  # no number given and none on file
    assert refused.status_code == 422 and b"the country code" in refused.data
    done = ask(callback_phone="+1 415 555 0123", callback_window="After 5 pm")
    case = the_case()
    assert done.headers["Location"] == f"/me/cases/{case.public_id}"
    assert case.topic == "callback" and case.due_at - case.created_at == timedelta(hours=4)
    page = agent.get(f"/staff/cases/{case.public_id}").get_data(as_text=True)
    assert "+14155550123" in page and "After 5 pm" in page
