"""People known only by a postal address: imported without an email, notified by letter,
and nothing that assumes an email breaks on them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Customer, Letter, Notice, OutboxMessage
from portal.services import imports, letters
from portal.services.customers import find_by_email, masked
from portal.services.imports import ImportRejected, import_customers
from portal.services.notices import queue_notices
from tests.approval_flow import approve_letters
from tests.conftest import customer_row

HEADER = [*imports.COLUMNS, *imports.ADDRESS_COLUMNS]
NO_EMAIL_HEADER = [c for c in HEADER if c != "email"]
ADDRESS = {
    "address_line1": "1 Market St",
    "city": "San Francisco",
    "postal_code": "94110",
}


def person(n: int, **overrides) -> dict:
    """An affected person with an address and no email (nor phone)."""
    return customer_row(n, email="", phone="", **ADDRESS) | overrides


def by_external_id(external_id: str) -> Customer:
    db.session.expire_all()
    return db.session.scalar(select(Customer).where(Customer.external_id == external_id))


def test_a_file_with_addresses_and_no_email_column_imports(app, incident, write_csv):
    rows = [person(1), person(2)]
    report = import_customers(incident, write_csv(rows, header=NO_EMAIL_HEADER), actor="test")
    assert report.created == 2
    customer = by_external_id("C-00001")
    assert (customer.email, customer.email_sealed, customer.email_index) == (None, None, None)
    assert customer.address_line1 == "1 Market St"


def test_a_row_with_neither_email_nor_address_is_refused_and_nothing_is_written(
    app, incident, write_csv
):
    rows = [person(1), customer_row(2, email="")]
    with pytest.raises(ImportRejected) as refused:
        import_customers(incident, write_csv(rows, header=HEADER), actor="test")
    assert [str(p) for p in refused.value.report.problems] == [
        "line 3: email is required when no postal address is given "
        "(address_line1, city, postal_code)"
    ]
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 0


def test_a_file_with_neither_an_email_column_nor_an_address_is_refused(app, incident, write_csv):
    header = ["external_id", "full_name", "data_classes", "city"]
    report = imports.validate(write_csv([["C-1", "Ann", "ssn", "Boston"]], header=header))
    assert "missing required column(s): email" in report.problems[0].reason


def test_a_later_file_without_an_email_keeps_the_one_on_file_and_one_with_it_adds_it(
    app, incident, write_csv
):
    import_customers(incident, write_csv([customer_row(1, **ADDRESS)], header=HEADER), actor="t")
    same_phone = person(1, phone=customer_row(1)["phone"])
    report = import_customers(incident, write_csv([same_phone], header=HEADER), actor="t")
    assert report.unchanged == 1
    assert by_external_id("C-00001").email == "person1@example.com"

    import_customers(incident, write_csv([person(2)], header=HEADER), actor="t")
    report = import_customers(
        incident, write_csv([person(2, email="new@example.com")], header=HEADER), actor="t"
    )
    assert report.updated == 1
    assert by_external_id("C-00002").email == "new@example.com"
    assert [c.external_id for c in find_by_email("new@example.com")] == ["C-00002"]


def test_a_person_without_email_gets_a_notice_but_no_email_and_is_on_the_letter_list(
    app, incident, write_csv
):
    rows = [customer_row(1, **ADDRESS), person(2)]
    import_customers(incident, write_csv(rows, header=HEADER), actor="test")

    assert queue_notices(incident, actor="test") == 2
    paper = by_external_id("C-00002")
    notice = db.session.scalar(select(Notice).where(Notice.customer_id == paper.id))
    assert notice.reference_code and notice.queued_at is None
    messages = db.session.scalars(select(OutboxMessage.notice_id)).all()
    assert len(messages) == 1 and notice.id not in messages
    assert queue_notices(incident, actor="test") == 0  # not picked again

    letters.plan(incident)
    assert db.session.execute(select(Letter.customer_id, Letter.reason)).all() == [
        (paper.id, "no_email")
    ]


def test_the_agent_sees_no_email_on_file(app, incident, write_csv):
    import_customers(incident, write_csv([person(1)], header=HEADER), actor="test")
    with app.test_request_context():
        assert masked(by_external_id("C-00001")).email == "no email on file"


def test_the_agents_customer_page_says_no_email_on_file(app, incident, write_csv, clock):
    from tests.staff_flow import set_up

    import_customers(incident, write_csv([person(1)], header=HEADER), actor="test")
    public_id = by_external_id("C-00001").public_id
    db.session.commit()
    agent = app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    page = agent.get(f"/staff/customers/{public_id}").get_data(as_text=True)
    assert "email: no email on file" in page


def test_a_letters_reference_code_without_phone_or_email_sends_the_person_to_a_person(
    app, client, incident, write_csv
):
    from tests.customer_flow import csrf_from

    import_customers(incident, write_csv([person(1)], header=HEADER), actor="test")
    queue_notices(incident, actor="test")
    code = db.session.scalar(select(Notice.reference_code))
    db.session.commit()
    page = client.get("/start")
    answer = client.post("/start", data={"csrf_token": csrf_from(page), "reference": code})
    assert answer.status_code == 200
    assert "no phone number or email address on file" in answer.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_acceptance_a_csv_with_addresses_and_no_emails_imports_and_letters_are_built_for_them(
    app, runner, incident, write_csv, tmp_path
):
    """Issue 16, acceptance 1, first sentence: the file, then `portal letters build`."""
    from pypdf import PdfReader

    from portal.services import reference_codes

    rows = [person(1), person(2, locale="es", city="Los Angeles", postal_code="90012-3456")]
    path = write_csv(rows, header=NO_EMAIL_HEADER)
    result = runner.invoke(args=["customers", "import", "--incident", incident.slug, str(path)])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 2

    out = tmp_path / "print"
    approve_letters(incident)  # legal approved these letters' words and counts (four eyes)
    db.session.commit()
    result = runner.invoke(args=["letters", "build", "--incident", incident.slug, str(out)])
    assert result.exit_code == 0, result.output
    assert "2 letter(s)" in result.output
    db.session.expire_all()
    assert sorted(db.session.scalars(select(Letter.reason))) == ["no_email", "no_email"]
    assert letters.counts(incident).produced == 2
    (pdf,) = out.glob("*.pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    for notice in db.session.scalars(select(Notice)):
        assert reference_codes.display(notice.reference_code) in text
    assert "1 Market St" in text and "Los Angeles, CA 90012-3456" in text
    (manifest,) = out.glob("*-manifest.csv")
    assert manifest.read_text(encoding="utf-8").count("Market St") == 2
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
