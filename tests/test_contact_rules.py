"""One rule for an email address and one for a phone number, the same at every door.

The import, /help (its contact and its call-back number), the agent's contact correction, the
new-link form, the incident's contact address and a staff invitation all take the good values
of the tables below, keep them in one form, and refuse the bad ones with a clear message,
changing nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Case, ContactChange, Customer, Incident, OutboxMessage, StaffMember
from portal.services.cases import contact_of
from portal.services.customers import find_by_email
from portal.services.imports import ImportRejected, import_customers
from portal.services.notices import queue_notices
from portal.validation import (
    Invalid,
    email_address,
    is_email,
    is_phone,
    normalise_email,
    phone_number,
)
from tests.conftest import customer_row
from tests.customer_flow import csrf_from, link_path, messages_to, run_jobs, sign_in
from tests.staff_flow import reauth, set_up

# (what a person types, what the portal keeps)
GOOD_EMAILS = [
    ("ana@example.com", "ana@example.com"),
    ("  Ana.Lopez+notices@Example.COM ", "Ana.Lopez+notices@example.com"),
    ("o'brien@mail.example.co.uk", "o'brien@mail.example.co.uk"),
    ("jose@bücher.example", "jose@xn--bcher-kva.example"),
    # IDNA 2008: faß.de is its own domain, not fass.de (someone else's).
    ("lena@faß.de", "lena@xn--fa-hia.de"),
    ("mei@例え.テスト", "mei@xn--r8jz45g.xn--zckzah"),
]
BAD_EMAILS = [
    "ana",
    "ana@",
    "@example.com",
    "ana@@example.com",
    "ana@localhost",  # no dot: it reaches nobody
    "ana@example.123",
    "ana..lopez@example.com",
    ".ana@example.com",
    "ana@-example.com",
    "ana@exa_mple.com",
    "ana@example.com.",
    "ana lopez@example.com",
    "anaí@example.com",  # a non-ASCII local part needs SMTPUTF8, which the outbox does not speak
    "ana@☃.example",
    "a" * 65 + "@example.com",
    "Ana <ana@example.com>",
]
GOOD_PHONES = [
    ("+14155550123", "+14155550123"),
    ("+1 (415) 555-0124", "+14155550124"),
    ("001 415 555 0125", "+14155550125"),
    ("+49 30 901820", "+4930901820"),
    ("+44.20.7946.0958", "+442079460958"),
]
BAD_PHONES = [
    "4155550123",  # no country code
    "(415) 555-0123",
    "14155550123",  # no +: the country code cannot be told from the number
    "+0 415 555 0123",
    "+1 415 555 0123 ext 5",
    "+12345",
    "+1234567890123456",
    "call me",
]

EMAIL_REFUSED = "Enter an email address like name@example.com."
PHONE_REFUSED = "Give the phone number with its country code, like +14155550123."


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


# --- the rule itself ---


@pytest.mark.parametrize(("typed", "kept"), GOOD_EMAILS)
def test_a_good_email_address_is_kept_in_one_form(app, typed, kept):
    assert email_address(typed) == kept
    assert is_email(typed)
    assert normalise_email(typed) == kept.casefold()  # what the lookups find it by


@pytest.mark.parametrize("typed", BAD_EMAILS)
def test_a_bad_email_address_is_refused_with_what_is_expected(app, typed):
    with pytest.raises(Invalid) as refused:
        email_address(typed)
    assert str(refused.value) == EMAIL_REFUSED
    assert not is_email(typed)


@pytest.mark.parametrize(("typed", "kept"), GOOD_PHONES)
def test_a_good_phone_number_is_kept_in_e164_form(app, typed, kept):
    assert phone_number(typed) == kept
    assert is_phone(typed)


@pytest.mark.parametrize("typed", BAD_PHONES)
def test_a_bad_phone_number_is_refused_with_what_is_expected(app, typed):
    with pytest.raises(Invalid) as refused:
        phone_number(typed)
    assert str(refused.value) == PHONE_REFUSED
    assert not is_phone(typed)


def test_lookups_of_plain_addresses_keep_their_index(app):
    """The blind index of every address imported before this rule is unchanged."""
    assert normalise_email(" Person1@Example.COM ") == "person1@example.com"
    assert normalise_email("not an address") == "not an address"


# --- the import ---


def test_the_import_keeps_what_the_rule_keeps(app, incident, write_csv):
    phones = [*GOOD_PHONES, ("", None)]  # one row without a phone
    rows = [
        customer_row(n, email=typed_email, phone=typed_phone)
        for n, ((typed_email, _kept), (typed_phone, _kept_phone)) in enumerate(
            zip(GOOD_EMAILS, phones, strict=True), start=1
        )
    ]
    report = import_customers(incident, write_csv(rows), actor="test")

    assert report.created == len(GOOD_EMAILS)
    for (typed_email, kept_email), (_typed, kept_phone) in zip(GOOD_EMAILS, phones, strict=True):
        found = find_by_email(typed_email)  # found by what the person types at any door
        assert [c.email for c in found] == [kept_email]
        assert found[0].phone == kept_phone


def test_the_import_refuses_what_the_rule_refuses_line_by_line(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1)]), actor="test")
    before = (count(Customer), find_by_email("person1@example.com")[0].updated_at)
    rows = [customer_row(1, email="changed@example.com")]
    rows += [customer_row(10 + n, email=typed) for n, typed in enumerate(BAD_EMAILS)]
    rows += [customer_row(100 + n, phone=typed) for n, typed in enumerate(BAD_PHONES)]

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, write_csv(rows), actor="test")

    problems = caught.value.report.problems
    assert [p.line for p in problems] == list(range(3, 3 + len(BAD_EMAILS) + len(BAD_PHONES)))
    emails, phones = problems[: len(BAD_EMAILS)], problems[len(BAD_EMAILS) :]
    assert all(p.reason == "email is not a valid address" for p in emails)
    assert all(p.reason == "phone must be in E.164 form, like +14155550123" for p in phones)
    assert (count(Customer), find_by_email("person1@example.com")[0].updated_at) == before


# --- /help: the contact and the call-back number ---


def ask_for_help(client, contact: str, **extra):
    page = client.get("/help")
    data = {
        "csrf_token": csrf_from(page),
        "topic": "cannot_verify",
        "name": "Ana Lopez",
        "contact": contact,
        "reference": "",
        "body": "My old phone number is gone.",
        **extra,
    }
    return client.post("/help", data=data)


def newest_case() -> Case:
    db.session.expire_all()
    return db.session.scalars(select(Case).order_by(Case.id.desc())).first()


def test_help_takes_the_contact_the_import_takes(app, client):
    for typed, kept in GOOD_EMAILS + GOOD_PHONES:
        asked = ask_for_help(client, typed)
        assert asked.headers.get("Location") == "/help/sent", typed
        assert contact_of(newest_case())["contact"] == kept

    cases = count(Case)
    for typed in BAD_EMAILS + BAD_PHONES:
        refused = ask_for_help(client, typed)
        assert refused.status_code == 422, typed
        assert "or a phone number starting with + and the country code" in refused.get_data(
            as_text=True
        )
    assert count(Case) == cases


def test_help_takes_the_call_back_number_the_import_takes(app, client):
    def ask(n: int, phone: str):
        return ask_for_help(
            client,
            f"caller{n}@example.com",
            topic="callback",
            callback_phone=phone,
            callback_window="Weekdays after 5 pm",
        )

    from portal.services.cases import callback_of

    for n, (typed, kept) in enumerate(GOOD_PHONES):
        assert ask(n, typed).headers.get("Location") == "/help/sent", typed
        assert callback_of(newest_case())["phone"] == kept

    cases = count(Case)
    for n, typed in enumerate(BAD_PHONES, start=100):
        refused = ask(n, typed)
        assert refused.status_code == 422, typed
        assert "the number to call with + and the country code" in refused.get_data(as_text=True)
    assert count(Case) == cases


# --- the agent's contact correction ---


@pytest.fixture
def agent_on_a_case(app, clock, incident, write_csv):
    """An agent, freshly re-authenticated, on the case of a customer with no phone on file."""
    rows = [customer_row(1, email="c@example.com", phone="", data_classes="ssn:1234")]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    customer = app.test_client()
    sign_in(customer, "c@example.com")
    page = customer.get("/me/cases")
    customer.post(
        "/me/cases",
        data={"csrf_token": csrf_from(page), "topic": "my_data", "body": "My address changed."},
    )
    agent = app.test_client()
    set_up(app, agent, "agent.a@example.com", "agent", clock)
    path = f"/staff/cases/{newest_case().public_id}"
    reauth(agent, "agent.a@example.com", clock, path)
    return agent, path


def correct(agent, path: str, **contact):
    page = agent.get(path)
    data = {"csrf_token": csrf_from(page), "reason": "Customer called in", **contact}
    return agent.post(f"{path}/tools/correct-contact", data=data, follow_redirects=True)


def the_customer() -> Customer:
    db.session.expire_all()
    return db.session.scalars(select(Customer)).one()


def held_change(agent, path: str) -> str:
    """The value of the contact change just asked for (held, not on the customer yet); it is
    then cancelled, so that the next correction of the same field may be asked for."""
    db.session.expire_all()
    change = db.session.scalars(select(ContactChange).order_by(ContactChange.id.desc())).first()
    page = agent.get(path)
    agent.post(
        f"/staff/contact-changes/{change.public_id}/cancel",
        data={"csrf_token": csrf_from(page), "reason": "Checking the rules", "next": path},
    )
    return change.value


def test_an_agent_corrects_to_what_the_import_takes(app, agent_on_a_case):
    agent, path = agent_on_a_case
    for typed, kept in GOOD_EMAILS:
        done = correct(agent, path, email=typed)
        assert "Asked, and recorded." in done.get_data(as_text=True), typed
        assert held_change(agent, path) == kept
        assert any("Confirm your new" in m.row.subject for m in messages_to(kept))
    for typed, kept in GOOD_PHONES:
        assert "Asked, and recorded." in correct(agent, path, phone=typed).get_data(as_text=True)
        assert held_change(agent, path) == kept


def test_an_agent_cannot_correct_to_what_the_import_refuses(app, agent_on_a_case):
    agent, path = agent_on_a_case
    before = (the_customer().email, the_customer().phone, the_customer().updated_at)
    messages = count(OutboxMessage)
    for typed in BAD_EMAILS:
        refused = correct(agent, path, email=typed).get_data(as_text=True)
        assert "That email address is not valid." in refused, typed
    for typed in BAD_PHONES:
        refused = correct(agent, path, phone=typed).get_data(as_text=True)
        assert "A phone number is in E.164 form, like +14155550123." in refused, typed
    after = the_customer()
    assert (after.email, after.phone, after.updated_at) == before
    assert count(OutboxMessage) == messages


# --- the other forms that take an address ---


def test_the_new_link_form_takes_what_the_import_takes(app, client):
    for typed, _kept in GOOD_EMAILS:
        page = client.get("/link/new")
        asked = client.post("/link/new", data={"csrf_token": csrf_from(page), "email": typed})
        assert asked.headers.get("Location") == "/link/sent", typed

    messages = count(OutboxMessage)
    for typed in BAD_EMAILS:
        page = client.get("/link/new")
        refused = client.post("/link/new", data={"csrf_token": csrf_from(page), "email": typed})
        assert refused.status_code == 422, typed
        assert EMAIL_REFUSED in refused.get_data(as_text=True)
    assert count(OutboxMessage) == messages


def test_someone_imported_with_an_international_address_gets_a_new_link(
    app, client, incident, write_csv
):
    import_customers(incident, write_csv([customer_row(1, email="lena@faß.de")]), actor="test")
    queue_notices(incident, actor="test")
    first = link_path("lena@xn--fa-hia.de")
    page = client.get("/link/new")
    client.post("/link/new", data={"csrf_token": csrf_from(page), "email": " Lena@FAß.de"})
    run_jobs(app)

    assert link_path("lena@xn--fa-hia.de") != first


def test_the_incidents_contact_address_follows_the_same_rule(app, clock, incident):
    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)

    def save(contact_email: str):
        page = admin.get("/admin/incidents/acme-2026")
        data = {
            "csrf_token": csrf_from(page),
            "title": incident.title,
            "status": incident.status,
            "discovered_on": "2026-10-09",
            "contact_phone": "1-800-555-0199",  # a helpline as people dial it: kept as written
            "contact_email": contact_email,
        }
        return admin.post("/admin/incidents/acme-2026", data=data, follow_redirects=True)

    for typed, kept in GOOD_EMAILS:
        assert "Saved." in save(typed).get_data(as_text=True), typed
        db.session.expire_all()
        assert db.session.get(Incident, incident.id).contact_email == kept
    for typed in BAD_EMAILS:
        assert "That email address is not valid." in save(typed).get_data(as_text=True), typed
        db.session.expire_all()
        assert db.session.get(Incident, incident.id).contact_email == GOOD_EMAILS[-1][1]
    assert db.session.get(Incident, incident.id).contact_phone == "1-800-555-0199"


def test_a_staff_invitation_takes_what_the_import_takes(app, runner):
    for n, (typed, kept) in enumerate(GOOD_EMAILS):
        result = runner.invoke(args=["staff", "invite", "--email", typed, "--role", "agent"])
        assert result.exit_code == 0, (typed, result.output)
        db.session.expire_all()
        members = db.session.scalars(select(StaffMember).order_by(StaffMember.id)).all()
        assert members[n].email == kept

    members = count(StaffMember)
    for typed in BAD_EMAILS:
        result = runner.invoke(args=["staff", "invite", "--email", typed, "--role", "agent"])
        assert result.exit_code != 0 and "Give a valid email address." in result.output, typed
    assert count(StaffMember) == members
