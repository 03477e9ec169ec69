"""Identity protection: one code per person, never one code for two, nobody loses their place."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from portal import spreadsheet, unit_of_work
from portal.extensions import db
from portal.models import ActivationCode, AuditEvent, Customer, Enrollment, OutboxMessage
from portal.services import protection
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import customer_row, pg_url
from tests.customer_flow import csrf_from, messages_to, sign_in

ANN = "ann@example.com"
BOB = "bob@example.com"


def offer_cli(runner, **extra):
    args = [
        "protection",
        "offer",
        "--incident",
        "acme-2026",
        "--provider",
        "Experian",
        "--product",
        "IdentityWorks 3B",
        "--includes",
        "Credit monitoring;Restoration",
        "--term-months",
        "24",
        "--enroll-by",
        (date.today() + timedelta(days=60)).isoformat(),
        "--enroll-url",
        "https://www.experianidworks.com/3bcredit",
        "--enroll-phone",
        "1-877-555-0100",
    ]
    for name, value in extra.items():
        args += [f"--{name.replace('_', '-')}", value]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    return protection.offer_for(1)


def load_codes(runner, tmp_path, codes: list[str], name="codes.txt"):
    path = tmp_path / name
    path.write_text("\n".join(codes) + "\n", encoding="utf-8")
    return runner.invoke(args=["protection", "import-codes", "--incident", "acme-2026", str(path)])


@pytest.fixture
def offered(app, runner, incident, write_csv, tmp_path):
    rows = [
        customer_row(1, email=ANN, phone="", data_classes="ssn:1111"),
        customer_row(2, email=BOB, phone="", data_classes="email_address"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    offer = offer_cli(runner)
    result = load_codes(runner, tmp_path, [f"CODE-{n:04d}-XYZ" for n in range(3)])
    assert "Loaded 3 codes" in result.output
    return offer


def customer(email: str) -> Customer:
    return next(c for c in db.session.scalars(select(Customer)) if c.email == email)


def enroll_in_browser(client, consent=True):
    page = client.get("/me/protection")
    data = {"csrf_token": csrf_from(page)}
    if consent:
        data["consent"] = "y"
    return client.post("/me/protection/1", data=data)


def test_enroll_shows_a_code_again_the_same_and_another_customer_another(offered, client, app):
    sign_in(client, ANN)
    page = client.get("/me/protection").get_data(as_text=True)
    assert "IdentityWorks 3B" in page and "Credit monitoring" in page
    assert "days left" in page

    assert enroll_in_browser(client).status_code == 302
    first = client.get("/me/protection").get_data(as_text=True)
    assert "CODE-0000-XYZ" in first and "You are enrolled" in first
    assert enroll_in_browser(client).status_code == 302  # a double-click changes nothing
    assert client.get("/me/protection").get_data(as_text=True).count("CODE-0000-XYZ") == 1

    other = app.test_client()
    sign_in(other, BOB)
    enroll_in_browser(other)
    assert "CODE-0001-XYZ" in other.get("/me/protection").get_data(as_text=True)
    mail = [m for m in messages_to(ANN) if "activation code" in m.row.subject]
    assert len(mail) == 1 and "CODE-0000-XYZ" in mail[0].text
    assert "experianidworks.com" in mail[0].text
    assert b"You are enrolled" in client.get("/me").data
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert {"protection.enrolled", "protection.code_assigned"} <= set(actions)


def test_enrolling_needs_consent(offered, client):
    sign_in(client, ANN)
    response = enroll_in_browser(client, consent=False)
    assert response.status_code == 422 and b"tick the box" in response.data
    assert db.session.scalars(select(Enrollment)).all() == []


def test_after_the_deadline_enrollment_is_refused_and_changes_nothing(offered, client, clock):
    # The page is opened minutes before the last day ends (UTC) and sent just after.
    clock.move_to(datetime.combine(offered.enroll_by, time(23, 58), UTC))
    sign_in(client, ANN)
    page = client.get("/me/protection")
    assert page.status_code == 200 and b"Enrollment closed" not in page.data
    clock.move(timedelta(minutes=4))
    response = client.post("/me/protection/1", data={"csrf_token": csrf_from(page), "consent": "y"})
    assert response.status_code == 403
    assert b"Enrollment closed on" in response.data
    assert b"restoring your identity" in response.data
    assert db.session.scalars(select(Enrollment)).all() == []
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(ActivationCode)
            .where(ActivationCode.customer_id.is_not(None))
        )
        == 0
    )


def test_an_ineligible_customer_is_refused_on_post(offered, runner, client):
    offer_cli(runner, eligible="ssn")  # only people whose SSN was involved
    sign_in(client, BOB)
    page = client.get("/me/protection")
    assert b"not available for your account" in page.data
    assert b"consent" not in page.data
    response = client.post("/me/protection/1", data={"csrf_token": csrf_from(page), "consent": "y"})
    assert response.status_code == 403
    assert db.session.scalars(select(Enrollment)).all() == []


def test_another_incidents_offer_is_not_found(offered, client):
    sign_in(client, ANN)
    page = client.get("/me/protection")
    response = client.post(
        "/me/protection/99", data={"csrf_token": csrf_from(page), "consent": "y"}
    )
    assert response.status_code == 404


def test_an_empty_pool_puts_people_in_line_and_new_codes_serve_them_in_order(
    app, runner, incident, write_csv, tmp_path
):
    rows = [customer_row(n, email=f"p{n}@example.com", phone="") for n in range(1, 6)]
    import_customers(incident, write_csv(rows), actor="test")
    offer = offer_cli(runner)
    load_codes(runner, tmp_path, ["ONLY-CODE-1"])
    for n in range(1, 6):
        protection.enroll(offer, customer(f"p{n}@example.com"))
    statuses = [e.status for e in db.session.scalars(select(Enrollment).order_by(Enrollment.id))]
    assert statuses == ["enrolled"] + ["waiting"] * 4
    alerts = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.dedupe_key.like("alert:pool-empty:%"))
    ).all()
    assert len(alerts) == 1  # one alert, not one per waiting customer

    result = load_codes(
        runner, tmp_path, ["NEXT-CODE-1", "NEXT-CODE-2", "NEXT-CODE-3"], name="more.txt"
    )
    assert "3 went to customers who were waiting" in result.output
    db.session.expire_all()
    served = {
        e.customer_id: protection.code_for(e)
        for e in db.session.scalars(select(Enrollment).where(Enrollment.status == "enrolled"))
    }
    by_email = {customer(f"p{n}@example.com").id: n for n in range(1, 6)}
    assert sorted(by_email[c] for c in served) == [1, 2, 3, 4]  # the first in line first
    assert served[customer("p2@example.com").id] == "NEXT-CODE-1"
    ready = [m for m in messages_to("p2@example.com") if "activation code" in m.row.subject]
    assert "a code is now ready for you" in ready[0].text


BAD_FILES = [
    ("duplicate", ["AAAA-1111", "BBBB-2222", "AAAA-1111"], 3, "same code as line 1"),
    ("already loaded", ["CODE-0001-XYZ"], 1, "loaded before"),
    ("empty line", ["AAAA-1111", "", "BBBB-2222"], 2, "empty"),
    ("bad format", ["AAAA-1111", "not a code!"], 2, "not an activation code"),
]


@pytest.mark.parametrize(
    ("case", "lines", "line", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_bad_code_files_write_nothing_and_report_the_line(
    offered, runner, tmp_path, case, lines, line, reason
):
    result = load_codes(runner, tmp_path, lines, name=f"{case}.txt")
    assert result.exit_code == 1
    assert f"line {line}: " in result.output and reason in result.output
    assert db.session.scalar(select(func.count()).select_from(ActivationCode)) == 3


def test_a_code_file_in_the_wrong_encoding(offered, runner, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("CÓDIGO-1234\n".encode("latin-1"))
    result = runner.invoke(
        args=["protection", "import-codes", "--incident", "acme-2026", str(path)]
    )
    assert result.exit_code == 1 and "not UTF-8" in result.output
    assert db.session.scalar(select(func.count()).select_from(ActivationCode)) == 3


def test_a_csv_code_file_and_codes_sealed_at_rest(offered, runner, tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("code,batch\nCSVC-0001,7\nCSVC-0002,7\n", encoding="utf-8")
    result = runner.invoke(
        args=["protection", "import-codes", "--incident", "acme-2026", str(path)]
    )
    assert "Loaded 2 codes" in result.output
    for (sealed,) in db.session.execute(select(ActivationCode.code_sealed)):
        assert b"CSVC" not in sealed and b"CODE-" not in sealed


def test_the_export_escapes_formulas(offered, runner, app, tmp_path):
    ann = customer(ANN)
    ann.name = '=HYPERLINK("http://evil.test","x")'
    db.session.commit()
    protection.enroll(protection.offer_for(1), ann)
    code = db.session.scalars(
        select(ActivationCode).where(ActivationCode.customer_id == ann.id)
    ).one()
    out = tmp_path / "export.csv"
    result = runner.invoke(args=["protection", "export", "--incident", "acme-2026", str(out)])
    assert "Exported 1 enrollments" in result.output
    with out.open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["full_name"] == "'" + '=HYPERLINK("http://evil.test","x")'
    assert row["activation_code"] == protection.code_of(code)
    assert row["external_id"] == "C-00001"
    assert "protection.exported" in db.session.scalars(select(AuditEvent.action)).all()


def test_the_export_writes_an_empty_email_for_a_person_known_by_letter(
    offered, runner, app, tmp_path
):
    ann = customer(ANN)
    ann.email = None  # imported with a postal address only
    db.session.commit()
    protection.enroll(protection.offer_for(1), ann)
    out = tmp_path / "export.csv"
    result = runner.invoke(args=["protection", "export", "--incident", "acme-2026", str(out)])
    assert "Exported 1 enrollments" in result.output, result.output
    with out.open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["external_id"], row["email"]) == ("C-00001", "")


def test_export_cell_escaping():
    for value in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet.cell(value) == "'" + value
    assert spreadsheet.cell("CODE-1") == "CODE-1"


# --- acceptance 2: concurrency, on PostgreSQL ---


def _run_threads(app, targets):
    errors = []

    def work(target):
        with app.app_context():
            try:
                with unit_of_work.unit():  # each thread is one request's unit of work
                    offer = protection.offer_for(1)
                    protection.enroll(offer, db.session.get(Customer, target))
            except Exception as exc:  # a test thread reports every failure
                errors.append(repr(exc))
            finally:
                db.session.remove()

    barrier = threading.Barrier(len(targets))

    def start(target):
        barrier.wait()
        work(target)

    threads = [threading.Thread(target=start, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)")
def test_fifty_at_once_against_forty_codes(app, runner, incident, write_csv, tmp_path):
    rows = [customer_row(n, email=f"c{n}@example.com", phone="") for n in range(1, 51)]
    import_customers(incident, write_csv(rows), actor="test")
    offer_cli(runner)
    load_codes(runner, tmp_path, [f"POOL-{n:04d}" for n in range(40)])
    ids = [c.id for c in db.session.scalars(select(Customer))]
    db.session.remove()

    errors = _run_threads(app, ids)

    assert errors == []
    db.session.expire_all()
    enrollments = db.session.scalars(select(Enrollment)).all()
    assert len(enrollments) == 50
    assert sum(e.status == "enrolled" for e in enrollments) == 40
    assert sum(e.status == "waiting" for e in enrollments) == 10
    given = db.session.scalars(
        select(ActivationCode).where(ActivationCode.customer_id.is_not(None))
    ).all()
    assert len(given) == 40
    assert len({c.customer_id for c in given}) == 40  # nobody holds two
    assert len({e.code_id for e in enrollments if e.code_id}) == 40  # no code twice


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)")
def test_the_same_customer_from_ten_threads_gets_one_code(offered, app):
    ann_id = customer(ANN).id
    db.session.remove()
    errors = _run_threads(app, [ann_id] * 10)
    assert errors == []
    db.session.expire_all()
    assert len(db.session.scalars(select(Enrollment)).all()) == 1
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(ActivationCode)
            .where(ActivationCode.customer_id == ann_id)
        )
        == 1
    )


# --- where the offer is open ---


@pytest.fixture
def abroad(app, runner, incident, write_csv):
    """Ann lives in California, Dora in Germany, Nell has no region on file."""
    rows = [
        customer_row(1, email=ANN, phone="", data_classes="ssn:1111", region="US-CA"),
        customer_row(2, email="dora@example.com", phone="", data_classes="ssn:2222", region="DE"),
        customer_row(3, email="nell@example.com", phone="", data_classes="ssn:3333", region=""),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    return offer_cli(runner, regions="us")


def test_an_offer_limited_to_the_us_is_not_offered_in_germany(abroad, client, app):
    assert abroad.regions == "US"  # stored as codes are written, upper case
    sign_in(client, "dora@example.com")
    page = client.get("/me/protection")
    text = page.get_data(as_text=True)
    assert "not offered where you live" in text
    assert 'name="consent"' not in text  # nothing to enroll in
    assert b"We offer you identity protection" not in client.get("/me").data
    response = client.post("/me/protection/1", data={"csrf_token": csrf_from(page), "consent": "y"})
    assert response.status_code == 403 and b"not available where you live" in response.data
    assert db.session.scalars(select(Enrollment)).all() == []

    for email in (ANN, "nell@example.com"):  # California, and no region: the home country
        other = app.test_client()
        sign_in(other, email)
        assert b"not offered where you live" not in other.get("/me/protection").data
        assert b"We offer you identity protection" in other.get("/me").data


def test_an_offer_limited_to_one_state(abroad, runner, client, app):
    offer_cli(runner, regions="US-NY, US-CA")
    db.session.expire_all()
    assert protection.offer_for(1).regions == "US-NY,US-CA"
    sign_in(client, ANN)
    assert enroll_in_browser(client).status_code == 302
    nell = app.test_client()
    sign_in(nell, "nell@example.com")  # no state on file: not known to live in NY or CA
    assert b"not offered where you live" in nell.get("/me/protection").data
    offer_cli(runner, regions="")  # empty: everywhere again
    assert b"not offered where you live" not in nell.get("/me/protection").data


@pytest.mark.parametrize("codes", ["USA", "US-XX", "U1", "US-CA;DE", "ZZ", "XY"])
def test_an_offer_with_unknown_region_codes_is_refused(abroad, runner, codes):
    result = runner.invoke(
        args=["protection", "offer", "--incident", "acme-2026", "--regions", codes]
    )
    assert result.exit_code != 0 and "Unknown region codes" in result.output
    db.session.expire_all()
    assert protection.offer_for(1).regions == "US"


def _offer_form(page, **changes) -> dict:
    data = {
        "csrf_token": csrf_from(page),
        "provider_name": "Experian",
        "product_name": "IdentityWorks 3B",
        "includes": "Credit monitoring\nRestoration",
        "term_months": "24",
        "enroll_by": (date.today() + timedelta(days=60)).isoformat(),
        "enroll_url": "https://www.experianidworks.com/3bcredit",
        "enroll_phone": "1-877-555-0100",
        "terms_url": "",
        "eligible_classes": "",
        "regions": "US",
        "minors_product": "",
        "includes_es": "Vigilancia del crédito",
    }
    data.update(changes)
    return data


def test_the_console_edits_where_the_offer_is_open(abroad, app, clock):
    from tests.staff_flow import set_up

    admin = app.test_client()
    set_up(app, admin, "boss@example.com", "admin", clock)
    page = admin.get("/admin/incidents/acme-2026/protection")
    assert page.status_code == 200 and b'value="US"' in page.data
    bad = admin.post(
        "/admin/incidents/acme-2026/protection", data=_offer_form(page, regions="US, Germany")
    )
    assert bad.status_code == 422 and b"Unknown region codes: GERMANY" in bad.data
    db.session.expire_all()
    assert protection.offer_for(1).regions == "US"

    saved = admin.post(
        "/admin/incidents/acme-2026/protection", data=_offer_form(page, regions="us-ca, de")
    )
    assert saved.status_code == 302
    db.session.expire_all()
    offer = protection.offer_for(1)
    assert offer.regions == "US-CA,DE" and offer.translations["es"]["includes"]
    dora = app.test_client()
    sign_in(dora, "dora@example.com")
    assert b"not offered where you live" not in dora.get("/me/protection").data
    assert "protection.offer_saved" in db.session.scalars(select(AuditEvent.action)).all()
