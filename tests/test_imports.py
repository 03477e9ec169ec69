"""Importing who was affected: validate everything first, upsert by external_id, stream."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from portal.extensions import db
from portal.models import AuditEvent, Customer, Exposure
from portal.services.customers import find_by_email
from portal.services.imports import ImportRejected, import_customers
from tests.conftest import TABLES, customer_row


def table_snapshot() -> dict[str, list[tuple]]:
    """Every row of every table but the audit trail (which records each run by design)."""
    db.session.expire_all()
    snapshot = {}
    for table in TABLES:
        if table != "audit_event":
            rows = db.session.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()  # noqa: S608
            snapshot[table] = [tuple(r) for r in rows]
    return snapshot


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_valid_file_creates_customers_and_exposures(app, incident, write_csv):
    path = write_csv([customer_row(1), customer_row(2, phone="", data_classes="ssn")])

    report = import_customers(incident, path, actor="test")

    assert (report.rows, report.created, report.exposures_added) == (2, 2, 4)
    first = find_by_email("person1@example.com")[0]
    assert first.external_id == "C-00001"
    assert first.name == "Person Number1"
    assert first.phone == "+14155550001"
    second = find_by_email("PERSON2@Example.com")[0]  # lookups ignore case
    assert second.phone is None
    fragments = {e.data_class: e.fragment for e in first.exposures}
    assert fragments == {"email_address": None, "payment_card": "4242", "ssn": "6789"}


def test_the_same_file_twice_changes_no_row(app, incident, write_csv):
    path = write_csv([customer_row(n) for n in range(1, 30)])
    import_customers(incident, path, actor="test")
    before = table_snapshot()

    report = import_customers(incident, path, actor="test")

    assert table_snapshot() == before
    assert (report.created, report.updated, report.unchanged) == (0, 0, 29)
    assert (report.exposures_added, report.exposures_updated) == (0, 0)


def test_corrected_file_updates_contact_data_and_adds_exposures(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1), customer_row(2)]), actor="test")
    corrected = write_csv(
        [
            customer_row(
                1,
                email="new.address@example.com",
                phone="+14155559999",
                data_classes="email_address;payment_card:1111;ssn:6789;date_of_birth",
            ),
            customer_row(2),
        ]
    )

    report = import_customers(incident, corrected, actor="test")

    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert (report.exposures_added, report.exposures_updated) == (1, 1)
    assert count(Customer) == 2
    assert count(Exposure) == 7
    assert find_by_email("person1@example.com") == []
    person = find_by_email("new.address@example.com")[0]
    assert person.phone == "+14155559999"
    assert {e.data_class: e.fragment for e in person.exposures}["payment_card"] == "1111"


def test_one_bad_row_among_a_thousand_writes_nothing(app, incident, write_csv):
    rows = [customer_row(n) for n in range(1, 1001)]
    rows[636] = customer_row(637, email="not-an-address")  # line 638: the header is line 1
    path = write_csv(rows)

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    report = caught.value.report
    assert report.problem_count == 1
    assert report.problems[0].line == 638
    assert "email" in report.problems[0].reason
    assert count(Customer) == 0
    assert count(Exposure) == 0
    rejected = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "customers.import_rejected")
    )
    assert rejected is not None and rejected.outcome == "failure"


BAD_ROWS = [
    ("unknown data class", {"data_classes": "ssn;shoe_size"}, "unknown data class"),
    ("fragment too long", {"data_classes": "payment_card:4242424242424242"}, "more than 4"),
    ("fragment of five", {"data_classes": "ssn:12345"}, "more than 4"),
    ("bad email", {"email": "someone@@example.com"}, "email"),
    ("email without domain", {"email": "someone@localhost"}, "email"),
    ("phone not E.164", {"phone": "(415) 555-0101"}, "E.164"),
    ("phone without plus", {"phone": "14155550101"}, "E.164"),
    ("missing name", {"full_name": ""}, "full_name is required"),
    ("missing data classes", {"data_classes": ""}, "data_classes is required"),
    ("bad locale", {"locale": "english"}, "locale"),
    ("bad region", {"region": "California"}, "region"),
    ("CR LF in name", {"full_name": "Bob\r\nBcc: x@evil.test"}, "full_name"),
    ("class twice", {"data_classes": "ssn;ssn:1234"}, "listed twice"),
]


@pytest.mark.parametrize(("case", "change", "reason"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_each_kind_of_bad_row_is_reported_with_its_line(
    app, incident, write_csv, case, change, reason
):
    path = write_csv([customer_row(1), customer_row(2), customer_row(3, **change)])

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    problems = caught.value.report.problems
    assert [p.line for p in problems] == [4]
    assert reason in problems[0].reason
    assert count(Customer) == 0


def test_duplicate_external_ids_name_both_lines(app, incident, write_csv):
    path = write_csv([customer_row(1), customer_row(2), customer_row(1, email="x@example.com")])

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    (problem,) = caught.value.report.problems
    assert problem.line == 4
    assert "repeats line 2" in problem.reason
    assert count(Customer) == 0


def test_missing_required_column(app, incident, write_csv):
    header = ["external_id", "full_name", "phone", "data_classes"]
    path = write_csv([["C-1", "Ann Example", "", "ssn"]], header=header)

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    assert "missing required column(s): email" in caught.value.report.problems[0].reason
    assert count(Customer) == 0


def test_unknown_column_is_refused_rather_than_ignored(app, incident, write_csv):
    header = ["external_id", "full_name", "email", "phnoe", "data_classes"]
    path = write_csv(
        [["C-1", "Ann Example", "ann@example.com", "+14155550100", "ssn"]], header=header
    )

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    assert "unknown column(s): phnoe" in caught.value.report.problems[0].reason


def test_wrong_encoding_is_reported(app, incident, write_csv):
    rows = [customer_row(1), customer_row(2, full_name="José Núñez")]
    path = write_csv(rows, encoding="latin-1")

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    assert "not UTF-8" in caught.value.report.problems[0].reason
    assert count(Customer) == 0


def test_row_with_extra_fields(app, incident, tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text(
        "external_id,full_name,email,data_classes\n"
        "C-1,Ann Example,ann@example.com,ssn,unexpected\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")
    assert "more fields than the header" in caught.value.report.problems[0].reason


def test_empty_file_and_header_only(app, incident, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    header_only = tmp_path / "header.csv"
    header_only.write_text("external_id,full_name,email,data_classes\n", encoding="utf-8")

    for path, reason in ((empty, "empty"), (header_only, "no rows")):
        with pytest.raises(ImportRejected) as caught:
            import_customers(incident, path, actor="test")
        assert reason in caught.value.report.problems[0].reason


def test_only_the_first_fifty_problems_are_listed(app, incident, write_csv):
    path = write_csv([customer_row(n, email="bad") for n in range(1, 81)])

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    report = caught.value.report
    assert report.problem_count == 80
    assert len(report.problems) == 50


def test_byte_order_mark_is_accepted(app, incident, write_csv):
    path = write_csv([customer_row(1)], encoding="utf-8-sig")
    assert import_customers(incident, path, actor="test").created == 1


def test_cli_import_reports_problems_and_exits_non_zero(runner, incident, write_csv):
    bad = write_csv([customer_row(1), customer_row(2, phone="555-0101")])
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(bad)])
    assert result.exit_code == 1
    assert "Nothing was imported: 1 problem(s)" in result.output
    assert "line 3: phone must be in E.164 form" in result.output

    good = write_csv([customer_row(1), customer_row(2)])
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(good)])
    assert result.exit_code == 0, result.output
    assert "Imported 2 rows: 2 new" in result.output


def test_cli_import_unknown_incident(runner, app, write_csv):
    path = write_csv([customer_row(1)])
    result = runner.invoke(args=["customers", "import", "--incident", "nope", str(path)])
    assert result.exit_code != 0
    assert "No incident has the slug nope" in result.output


def test_import_is_audited_without_personal_data(app, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1)]), actor="cli:alice")

    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "customers.imported"))
    assert event.actor == "cli:alice"
    assert event.subject_id == "acme-2026"
    assert '"created":1' in event.details
    assert "person1" not in event.details
