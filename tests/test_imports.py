"""Importing who was affected: validate everything first, upsert by external_id, stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text

from portal import unit_of_work
from portal.extensions import db
from portal.models import AuditEvent, Customer, Exposure
from portal.services import imports
from portal.services.customers import find_by_email
from portal.services.imports import ImportRejected, import_customers
from tests.conftest import TABLES, customer_row, pg_url


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


def _bytes_file(tmp_path, content: bytes):
    path = tmp_path / "bytes.csv"
    path.write_bytes(content)
    return path


HEADER_LINE = b"external_id,full_name,email,phone,locale,region,data_classes\r\n"


def _row_bytes(n: int, name: bytes | None = None) -> bytes:
    name = name or b"Person %d" % n
    return b"C-%d,%s,p%d@example.com,,en,US-CA,ssn\r\n" % (n, name, n)


def test_a_byte_that_is_not_utf8_is_reported_on_its_own_line(app, incident, tmp_path):
    rows = [_row_bytes(n) for n in range(1, 8)]
    rows[3] = _row_bytes(4, b"Jos\xe9 N\xfa\xf1ez")  # Latin-1, on the file's line 5
    path = _bytes_file(tmp_path, HEADER_LINE + b"".join(rows))

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    report = caught.value.report
    assert [str(p) for p in report.problems] == [
        "line 5: this line is not UTF-8 text; save the file as CSV UTF-8 and upload it again"
    ]
    assert (report.rows, report.complete) == (7, True)  # the whole file was checked
    assert count(Customer) == 0


def test_a_bad_byte_inside_a_quoted_field_names_the_line_that_holds_it(app, incident, tmp_path):
    quoted = b'C-2,"Ann\r\nJos\xe9",p2@example.com,,en,US-CA,ssn\r\n'  # lines 3 and 4
    path = _bytes_file(tmp_path, HEADER_LINE + _row_bytes(1) + quoted + _row_bytes(3))

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    assert [p.line for p in caught.value.report.problems] == [4]


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be"], ids=["with-mark", "le", "be"]
)
def test_a_utf16_file_gets_one_clear_message(app, incident, tmp_path, encoding):
    text = (HEADER_LINE + _row_bytes(1) + _row_bytes(2)).decode()
    path = _bytes_file(tmp_path, text.encode(encoding))

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    report = caught.value.report
    assert report.problem_count == 1
    assert "saved as UTF-16" in report.problems[0].reason
    assert "save it as CSV UTF-8" in report.problems[0].reason
    assert report.complete is False
    assert count(Customer) == 0


def test_a_bad_byte_in_the_header_is_line_1(app, incident, tmp_path):
    path = _bytes_file(
        tmp_path, b"external_id,full_name\xff,email,data_classes\n" + b"C-1,A,a@b.de,ssn\n"
    )
    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")
    assert str(caught.value.report.problems[0]).startswith("line 1: this line is not UTF-8")


def test_cli_names_the_line_and_does_not_claim_zero_rows(runner, incident, tmp_path):
    rows = [_row_bytes(n) for n in range(1, 8)]
    rows[3] = _row_bytes(4, b"Jos\xe9")
    bad = _bytes_file(tmp_path, HEADER_LINE + b"".join(rows))
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(bad)])
    assert result.exit_code == 1
    assert "Nothing was imported: 1 problem(s) in 7 row(s) of bytes.csv." in result.output
    assert "line 5: this line is not UTF-8 text" in result.output

    utf16 = tmp_path / "wide.csv"
    utf16.write_bytes((HEADER_LINE + _row_bytes(1)).decode().encode("utf-16"))
    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(utf16)])
    assert result.exit_code == 1
    assert "0 row" not in result.output
    assert "wide.csv could not be read to its end" in result.output
    assert "line 1: the file is saved as UTF-16" in result.output


@pytest.mark.parametrize(
    "character",
    [
        "\u202e",
        "\u202a",
        "\u2066",
        "\u2069",
        "\u200b",
        "\u200f",
        "\u2060",
        "\ufeff",
        "\u061c",
        # found in review: the soft hyphen, a tag character, a Hangul filler, the blank Braille
        # pattern, a deprecated format character, an interlinear annotation anchor
        "\u00ad",
        "\U000e0041",
        "\u3164",
        "\u2800",
        "\u206a",
        "\ufff9",
    ],
)
@pytest.mark.parametrize("column", ["full_name", "external_id"])
def test_invisible_or_direction_changing_characters_are_refused(
    app, incident, write_csv, character, column
):
    value = {"full_name": f"Ann{character}Example", "external_id": f"C-{character}1"}[column]
    path = write_csv([customer_row(1), customer_row(2, **{column: value})])

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")

    assert [str(p) for p in caught.value.report.problems] == [
        f"line 3: {column} contains an invisible or direction-changing character"
    ]
    assert count(Customer) == 0


@pytest.mark.parametrize("character", ["\x80", "\x85", "\x9f"])
def test_c1_control_characters_are_refused_in_names_and_ids(app, incident, write_csv, character):
    path = write_csv([customer_row(1, full_name=f"Ann{character}Example"), customer_row(2)])
    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, path, actor="test")
    assert "line 2: full_name must be at most 200 printable characters" in str(
        caught.value.report.problems[0]
    )


def test_accents_and_other_scripts_stay_welcome(app, incident, write_csv):
    names = ["José Núñez", "Zoë Ørsted", "محمد علي", "李小龍", "Ngũgĩ wa Thiong'o"]
    path = write_csv([customer_row(n, full_name=name) for n, name in enumerate(names, 1)])
    assert import_customers(incident, path, actor="test").created == len(names)


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
    assert "Nothing was imported: 1 problem(s) in 2 row(s) of" in result.output
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


# --- the file is read once: batches written before a problem are undone ---


def test_a_bad_row_after_batches_were_written_leaves_nothing_of_them(
    app, incident, write_csv, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH_SIZE", 10)
    import_customers(incident, write_csv([customer_row(n) for n in range(1, 6)]), actor="t")
    before = table_snapshot()
    rows = [customer_row(n, full_name=f"Renamed {n}") for n in range(1, 60)]
    rows[55] = customer_row(56, phone="555-0101")  # five batches of ten were written before it

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, write_csv(rows), actor="test")

    assert [p.line for p in caught.value.report.problems] == [57]
    assert table_snapshot() == before


@pytest.mark.parametrize(
    ("twin", "first"),
    [(35, 3), (15, 5), (15, 12)],
    # The batch just before is looked up before it is stored: a case of its own.
    ids=["of-an-earlier-batch", "of-the-batch-just-before", "in-its-own-batch"],
)
def test_a_duplicate_in_a_later_batch_is_named_and_writes_nothing(
    app, incident, write_csv, monkeypatch, twin, first
):
    monkeypatch.setattr(imports, "BATCH_SIZE", 10)
    rows = [customer_row(n) for n in range(1, 40)]
    rows[twin] = customer_row(first, email="other@example.com")

    with pytest.raises(ImportRejected) as caught:
        import_customers(incident, write_csv(rows), actor="test")

    assert [str(p) for p in caught.value.report.problems] == [
        f"line {twin + 2}: external_id repeats line {first + 1}"
    ]
    assert count(Customer) == 0


def test_two_ids_with_the_same_digest_are_both_imported(app, incident, write_csv, monkeypatch):
    monkeypatch.setattr(imports, "BATCH_SIZE", 10)
    # Every id "collides" with every other: only the exact second look tells them apart.
    monkeypatch.setattr(imports, "_id_digest", lambda external_id: 1)
    rows = [customer_row(n) for n in range(1, 26)]

    report = import_customers(incident, write_csv(rows), actor="test")

    assert (report.rows, report.created, report.exposures_added) == (25, 25, 75)
    assert count(Customer) == 25
    assert count(Exposure) == 75
    assert find_by_email("person25@example.com")[0].name == "Person Number25"


def test_a_sqlite_import_writes_with_a_smaller_page_cache_and_gives_it_back(
    app, incident, write_csv, monkeypatch
):
    """The million-row import stays under 200 MB of RSS with its own, smaller SQLite page cache
    (bench/import_bench.py); the connection then goes back to the app's own setting."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's page cache")
    monkeypatch.setattr(imports, "BATCH_SIZE", 10)

    def cache() -> int:
        return db.session.connection().exec_driver_sql("PRAGMA cache_size").scalar()

    before = cache()
    during = []
    store = imports._SQLiteWriter.store

    def noting(self, *args):
        during.append(cache())
        return store(self, *args)

    monkeypatch.setattr(imports._SQLiteWriter, "store", noting)

    import_customers(incident, write_csv([customer_row(n) for n in range(1, 26)]), actor="test")

    assert before == -65536
    assert set(during) == {-imports._SQLiteWriter.CACHE_KIB}
    assert imports._SQLiteWriter.CACHE_KIB * 1024 < 64 * 1024 * 1024
    assert cache() == before


def test_batches_of_new_and_known_customers_keep_their_ids_and_seals(
    app, incident, write_csv, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH_SIZE", 7)
    import_customers(incident, write_csv([customer_row(n) for n in range(1, 20, 2)]), actor="t")
    first = {c.external_id: (c.id, c.public_id) for c in db.session.scalars(select(Customer))}
    rows = [customer_row(n) for n in range(1, 31)]
    rows[2] = customer_row(3, full_name="Third Person", data_classes="ssn:1111;password")

    report = import_customers(incident, write_csv(rows), actor="test")

    assert (report.created, report.updated, report.unchanged) == (20, 1, 9)
    assert (report.exposures_added, report.exposures_updated) == (61, 1)
    db.session.expire_all()
    customers = {c.external_id: c for c in db.session.scalars(select(Customer))}
    assert {k: (c.id, c.public_id) for k, c in customers.items() if k in first} == first
    assert len({c.public_id for c in customers.values()}) == 30
    third = customers["C-00003"]
    assert third.name == "Third Person"
    assert {e.data_class: e.fragment for e in third.exposures} == {
        "email_address": None,
        "payment_card": "4242",
        "ssn": "1111",
        "password": None,
    }
    last = find_by_email("person30@example.com")[0]
    assert {e.data_class: e.fragment for e in last.exposures}["payment_card"] == "4242"


# --- the plans at scale (issue 14, acceptance 2) ---


def _scans(plan: dict) -> Iterator[tuple[str, str | None]]:
    yield plan["Node Type"], plan.get("Relation Name")
    for child in plan.get("Plans", ()):
        yield from _scans(child)


class _Explaining:
    """The writer's cursor, asking PostgreSQL for the plan of each query before running it."""

    def __init__(self, cursor, plans: dict[str, list]):
        self.cursor = cursor
        self.plans = plans

    def execute(self, statement, params=None):
        if statement.startswith(("SELECT id", "INSERT")):
            self.cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
            self.plans[statement] = list(_scans(self.cursor.fetchone()[0][0]["Plan"]))
        return self.cursor.execute(statement, params)

    def __getattr__(self, name):
        return getattr(self.cursor, name)


@pytest.mark.skipif(not pg_url(), reason="PostgreSQL's planner (the suite runs there in CI)")
def test_no_statement_of_the_import_scans_a_large_customer_or_exposure_table(
    app, incident, write_csv, monkeypatch
):
    raw = db.session.connection().connection.dbapi_connection
    # 200,000 other people, as a large incident leaves them (their values need not open here).
    raw.execute(
        "INSERT INTO customer (external_id, public_id, name_sealed, email_sealed, email_index, "
        "locale, region) SELECT 'X-' || g, lpad(to_hex(g), 32, '0'), '\\x00', '\\x00', "
        "decode(md5(g::text), 'hex'), 'en', '' FROM generate_series(1, 200000) g"
    )
    raw.execute(
        "INSERT INTO exposure (customer_id, incident_id, data_class) "
        "SELECT id, %s, 'ssn' FROM customer",
        [incident.id],
    )
    half = imports.BATCH_SIZE // 2
    import_customers(incident, write_csv([customer_row(n) for n in range(half)]), actor="t")
    raw.execute("ANALYZE customer")
    raw.execute("ANALYZE exposure")
    plans: dict[str, list] = {}
    writer = imports._writer

    def explaining(incident_id, report):
        made = writer(incident_id, report)
        made.cursor = _Explaining(made.cursor, plans)
        return made

    monkeypatch.setattr(imports, "_writer", explaining)
    # One full batch: half of it known (with exposures to compare), half new.
    # (A changed fragment and a new class: the known half's exposures are written too.)
    classes = "email_address;payment_card:1111;ssn:6789;password"
    rows = [customer_row(n, region="DE", data_classes=classes) for n in range(imports.BATCH_SIZE)]

    report = import_customers(incident, write_csv(rows), actor="test")

    assert (report.created, report.updated) == (imports.BATCH_SIZE - half, half)
    assert {" ".join(s.split()[:4]) for s in plans} == {
        "SELECT id, external_id, public_id,",  # who of the batch is known
        "SELECT id, customer_id, data_class,",  # their exposures to this incident
        "INSERT INTO customer AS",  # the upserts of the known (the new go by COPY)
        "INSERT INTO exposure AS",
    }
    for statement, scans in plans.items():
        seq_scanned = [table for node, table in scans if node == "Seq Scan"]
        assert not {"customer", "exposure"} & set(seq_scanned), (statement, scans)


def test_a_customer_added_by_another_run_meanwhile_fails_the_import_and_writes_nothing(
    app, incident, write_csv, monkeypatch
):
    import_customers(incident, write_csv([customer_row(2)]), actor="test")
    before = table_snapshot()
    writer = imports._writer

    def unaware(incident_id, report):
        # As if C-00002 had been committed by another run after this one looked for it.
        made = writer(incident_id, report)
        made.known = lambda external_ids: []
        return made

    monkeypatch.setattr(imports, "_writer", unaware)

    with pytest.raises(Exception, match=r"another run|UNIQUE|unique"):
        import_customers(
            incident, write_csv([customer_row(1), customer_row(2, full_name="Other")]), actor="t"
        )

    assert table_snapshot() == before


def test_a_command_that_fails_after_the_rows_are_written_keeps_none_of_them(
    runner, incident, write_csv, monkeypatch
):
    unit_of_work.commit()
    recorded = imports.audit.record

    def fail_on_success(action, **kwargs):
        if action == "customers.imported":
            raise RuntimeError("the disk filled up")
        return recorded(action, **kwargs)

    monkeypatch.setattr(imports.audit, "record", fail_on_success)
    path = write_csv([customer_row(1), customer_row(2)])

    result = runner.invoke(args=["customers", "import", "--incident", "acme-2026", str(path)])

    assert isinstance(result.exception, RuntimeError)
    other = create_engine(db.engine.url)  # what was committed, seen from another connection
    with other.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Customer)) == 0
        assert connection.scalar(select(func.count()).select_from(Exposure)) == 0
    other.dispose()


CONSENT_HEADER = [*imports.COLUMNS, "email_consent"]


def consents() -> dict[str, bool | None]:
    db.session.expire_all()
    return dict(db.session.execute(select(Customer.external_id, Customer.email_consent)).all())


def test_consent_to_email_is_recorded_where_the_file_says_so(app, incident, write_csv):
    rows = [
        customer_row(1, email_consent="yes"),
        customer_row(2, email_consent="No"),
        customer_row(3, email_consent=""),
        customer_row(4, email_consent="true"),
    ]
    import_customers(incident, write_csv(rows, header=CONSENT_HEADER), actor="test")
    assert consents() == {"C-00001": True, "C-00002": False, "C-00003": None, "C-00004": True}

    # A later file that does not say (no column, or an empty value) keeps what was said; one
    # that says otherwise changes it.
    report = import_customers(incident, write_csv([customer_row(1)]), actor="test")
    assert report.unchanged == 1
    later = [customer_row(2, email_consent=""), customer_row(4, email_consent="no")]
    import_customers(incident, write_csv(later, header=CONSENT_HEADER), actor="test")
    assert consents() == {"C-00001": True, "C-00002": False, "C-00003": None, "C-00004": False}


def test_consent_may_come_in_any_column_order(app, incident, write_csv):
    header = ["email_consent", *reversed(imports.COLUMNS)]
    import_customers(
        incident, write_csv([customer_row(7, email_consent="1")], header=header), actor="test"
    )
    assert consents() == {"C-00007": True}


def test_a_consent_that_is_neither_yes_nor_no_is_refused_with_its_line(app, incident, write_csv):
    rows = [customer_row(1, email_consent="yes"), customer_row(2, email_consent="maybe")]
    with pytest.raises(ImportRejected) as refused:
        import_customers(incident, write_csv(rows, header=CONSENT_HEADER), actor="test")
    assert [str(p) for p in refused.value.report.problems] == [
        "line 3: email_consent must be yes or no (or left empty)"
    ]
    assert count(Customer) == 0


ADDRESS_HEADER = [*imports.COLUMNS, *imports.ADDRESS_COLUMNS]
ADDRESS = {
    "address_line1": "1 Market St",
    "address_line2": "Apt 4",
    "city": "San Francisco",
    "postal_code": "941101234",
}


def addresses() -> dict[str, tuple]:
    db.session.expire_all()
    return {
        c.external_id: (c.address_line1, c.address_line2, c.city, c.postal_code)
        for c in db.session.scalars(select(Customer).order_by(Customer.id))
    }


def test_postal_addresses_are_imported_sealed_and_a_reimport_updates_them(app, incident, write_csv):
    rows = [customer_row(1, **ADDRESS), customer_row(2)]
    import_customers(incident, write_csv(rows, header=ADDRESS_HEADER), actor="test")
    assert addresses() == {
        "C-00001": ("1 Market St", "Apt 4", "San Francisco", "94110-1234"),
        "C-00002": (None, None, None, None),
    }
    # Sealed at rest: the city is nowhere in the row as stored.
    stored = db.session.execute(text("SELECT * FROM customer WHERE external_id = 'C-00001'")).one()
    assert not any(isinstance(v, bytes) and b"San Francisco" in v for v in stored)

    # The same file again changes nothing; a moved person's new address replaces the old one
    # (line 2 gone with it); a file without the columns keeps what was given.
    before = table_snapshot()
    report = import_customers(incident, write_csv(rows, header=ADDRESS_HEADER), actor="test")
    assert (report.unchanged, table_snapshot()) == (2, before)
    moved = dict(ADDRESS, address_line1="9 Oak Ave", address_line2="", postal_code="94117")
    report = import_customers(
        incident, write_csv([customer_row(1, **moved)], header=ADDRESS_HEADER), actor="test"
    )
    assert report.updated == 1
    import_customers(incident, write_csv([customer_row(1), customer_row(2)]), actor="test")
    assert addresses()["C-00001"] == ("9 Oak Ave", None, "San Francisco", "94117")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            {"address_line1": "1 Market St", "city": "San Francisco"},
            "A postal address needs its first line, its city and its postal code.",
        ),
        ({**ADDRESS, "postal_code": "9411"}, "A US ZIP code has 5 or 9 digits"),
        ({**ADDRESS, "address_line1": "x" * 41}, "longer than 40 characters"),
        ({**ADDRESS, "city": "San\u202eFrancisco"}, "on one line"),
    ],
)
def test_a_bad_address_is_refused_with_its_line_and_changes_nothing(
    app, incident, write_csv, address, message
):
    import_customers(incident, write_csv([customer_row(1)]), actor="test")
    before = table_snapshot()
    rows = [customer_row(1, **ADDRESS), customer_row(2, **address)]
    with pytest.raises(ImportRejected) as refused:
        import_customers(incident, write_csv(rows, header=ADDRESS_HEADER), actor="test")
    [problem] = refused.value.report.problems
    assert str(problem).startswith("line 3: postal address: ")
    assert message in str(problem)
    assert table_snapshot() == before


def test_address_columns_may_come_in_any_order_and_a_file_without_them_is_still_valid(
    app, incident, write_csv
):
    header = ["postal_code", "city", *reversed(imports.COLUMNS), "address_line1"]
    import_customers(incident, write_csv([customer_row(5, **ADDRESS)], header=header), actor="test")
    assert addresses() == {"C-00005": ("1 Market St", None, "San Francisco", "94110-1234")}
    assert imports.validate(write_csv([customer_row(6)])).ok


def test_creating_the_app_leaves_the_pdf_library_unloaded(tmp_path):
    """fpdf2 adds some 22 MB to a process; the million-row import (under 200 MB) and the web
    workers make no PDF, so it is loaded only when a letter or a report is made."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = (
        "import sys; from portal import create_app; create_app(); "
        "sys.exit(1 if 'fpdf' in sys.modules else 0)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PORTAL_ENV": "testing",
        "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "PORTAL_INSTANCE_PATH": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, timeout=120)
    assert result.returncode == 0, "creating the app loaded fpdf"
