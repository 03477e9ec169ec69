"""Printed letters: who gets one, the print files, the manifest, the mailing date."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Customer, Letter, Notice, OutboxMessage
from portal.services import letters, metrics, reference_codes
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.validation import normalise_postal_code, postal_address_problems
from tests.approval_flow import approve_letters
from tests.conftest import BASE_URL, customer_row


@pytest.fixture
def people(incident, write_csv):
    """Four affected people, each with a postal address; returns them by external id."""
    rows = [customer_row(n) for n in range(1, 5)]
    rows[3]["locale"] = "es"
    import_customers(incident, write_csv(rows), actor="test")
    found = {}
    for n, customer in enumerate(db.session.scalars(select(Customer).order_by(Customer.id))):
        customer.address_line1 = f"{100 + n} Market Street"
        customer.address_line2 = "Apt 4" if n == 0 else None
        customer.city = "San Francisco"
        customer.postal_code = "94110"
        found[customer.external_id] = customer
    db.session.flush()
    return found


def chosen(incident) -> dict[str, str]:
    letters.plan(incident)
    rows = db.session.execute(
        select(Customer.external_id, Letter.reason).join(Letter, Letter.customer_id == Customer.id)
    )
    return dict(rows.all())


def test_nobody_gets_a_letter_when_every_email_works_and_no_postal_notice_is_required(
    app, incident, people
):
    assert chosen(incident) == {}


def test_postal_notice_gives_a_letter_to_everyone_who_did_not_agree_to_email(app, incident, people):
    incident.postal_notice = True
    people["C-00002"].email_consent = True
    people["C-00003"].email_consent = False
    db.session.flush()
    assert chosen(incident) == {
        "C-00001": "postal_notice",
        "C-00003": "postal_notice",
        "C-00004": "postal_notice",
    }


def test_a_permanently_bounced_email_puts_the_person_on_the_letter_list(app, incident, people):
    queue_notices(incident, actor="test")
    notice = db.session.scalar(select(Notice).where(Notice.customer_id == people["C-00002"].id))
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.notice_id == notice.id).values(status="failed")
    )
    assert chosen(incident) == {"C-00002": "bounced"}


def test_an_agent_marks_a_person_for_a_letter_once(app, incident, people):
    assert letters.request_letter(incident, people["C-00003"], actor="staff:1")
    assert not letters.request_letter(incident, people["C-00003"], actor="staff:1")
    assert chosen(incident) == {"C-00003": "agent"}


def test_build_writes_pdfs_in_batches_and_a_manifest_and_records_each_letter(
    app, incident, people, tmp_path
):
    incident.postal_notice = True
    db.session.flush()
    count, files, manifest = letters.build(incident, tmp_path, batch_size=3, actor="test")
    assert count == 4
    assert len(files) == 2 and all(f.read_bytes().startswith(b"%PDF") for f in files)
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["batch_file"] for r in rows] == [files[0].name] * 3 + [files[1].name]
    assert rows[0]["address_line1"] == "100 Market Street" and rows[0]["postal_code"] == "94110"
    produced = db.session.scalars(select(Letter).where(Letter.produced_at.is_not(None))).all()
    assert len(produced) == 4 and all(letter.page_count >= 1 for letter in produced)
    # A second build has nothing left to print.
    assert letters.build(incident, tmp_path / "again", actor="test")[0] == 0


def test_a_letter_shows_the_reference_code_in_display_form_and_the_notice_headings(
    app, incident, people, tmp_path
):
    letters.request_letter(incident, people["C-00001"], actor="staff:1")
    _count, files, _manifest = letters.build(incident, tmp_path, actor="test")
    text = "\n".join(page.extract_text() for page in PdfReader(files[0]).pages)
    notice = db.session.scalar(select(Notice).where(Notice.customer_id == people["C-00001"].id))
    assert reference_codes.display(notice.reference_code) in text
    for heading in (
        "Notice of Data Breach",
        "What Happened",
        "What Information Was Involved",
        "What We Are Doing",
        "What You Can Do",
        "For More Information",
    ):
        assert heading in text
    assert f"{BASE_URL}/genuine" in text and f"{BASE_URL}/start" in text
    assert "100 Market Street" in text and "Apt 4" in text


def test_a_page_of_a_letter_renders_to_png(app, incident, people, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    letters.request_letter(incident, people["C-00001"], actor="staff:1")
    _count, files, _manifest = letters.build(incident, tmp_path, actor="test")
    document = pdfium.PdfDocument(str(files[0]))
    image = document[0].render(scale=1).to_pil()
    png = tmp_path / "page.png"
    image.save(png)
    assert png.read_bytes().startswith(b"\x89PNG")
    code = db.session.scalar(select(Notice.reference_code))
    assert reference_codes.display(code) in document[0].get_textpage().get_text_range()
    document.close()


def test_a_spanish_readers_letter_is_in_spanish(app, incident, people, tmp_path):
    letters.request_letter(incident, people["C-00004"], actor="staff:1")
    _count, files, _manifest = letters.build(incident, tmp_path, actor="test")
    text = "\n".join(page.extract_text() for page in PdfReader(files[0]).pages)
    assert "Aviso de" in text


def test_manifest_cells_that_a_spreadsheet_would_run_are_escaped(app, incident, people, tmp_path):
    people["C-00001"].address_line1 = '=HYPERLINK("http://evil")'
    letters.request_letter(incident, people["C-00001"], actor="staff:1")
    _count, _files, manifest = letters.build(incident, tmp_path, actor="test")
    with manifest.open(newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["address_line1"].startswith("'=")


def test_marking_letters_mailed_updates_the_funnel(app, incident, people, tmp_path):
    incident.postal_notice = True
    db.session.flush()
    _count, _files, manifest = letters.build(incident, tmp_path, actor="test")
    assert metrics.funnel(incident).counts["mailed"] == 0
    assert letters.mark_mailed(incident, manifest, date(2026, 11, 20), actor="test") == 4
    assert metrics.funnel(incident).counts["mailed"] == 4
    assert letters.counts(incident).mailed == 4


def test_a_manifest_with_an_unknown_letter_changes_nothing(app, incident, people, tmp_path):
    incident.postal_notice = True
    db.session.flush()
    _count, _files, manifest = letters.build(incident, tmp_path, actor="test")
    with manifest.open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(["not-a-letter"])
    with pytest.raises(letters.LetterError):
        letters.mark_mailed(incident, manifest, date(2026, 11, 20), actor="test")
    assert letters.counts(incident).mailed == 0


def test_cli_builds_and_marks_mailed_and_refuses_bad_input(app, runner, incident, people, tmp_path):
    incident.postal_notice = True
    db.session.flush()
    result = runner.invoke(args=["letters", "build", "--incident", "nope", str(tmp_path)])
    assert result.exit_code != 0 and "nope" in result.output
    result = runner.invoke(
        args=["letters", "build", "--incident", incident.slug, str(tmp_path), "--batch-size", "0"]
    )
    assert result.exit_code != 0
    result = runner.invoke(args=["letters", "build", "--incident", incident.slug, str(tmp_path)])
    assert result.exit_code != 0 and "not approved as they are now" in result.output
    assert not list(tmp_path.glob("*.pdf"))
    approve_letters(incident)
    result = runner.invoke(args=["letters", "build", "--incident", incident.slug, str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "4 letter(s)" in result.output
    manifest = next(tmp_path.glob("*-manifest.csv"))
    result = runner.invoke(
        args=["letters", "mark-mailed", "--incident", incident.slug, str(manifest), "--on", "x"]
    )
    assert result.exit_code != 0
    result = runner.invoke(
        args=[
            "letters",
            "mark-mailed",
            "--incident",
            incident.slug,
            str(manifest),
            "--on",
            "2026-11-20",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Marked 4 letter(s) mailed on 2026-11-20" in result.output


def test_mask_address_shows_no_street_or_full_code(app, incident, people):
    masked = letters.mask_address(people["C-00001"])
    assert "Market" not in masked and "94110" not in masked and "CA" in masked


@pytest.mark.parametrize(
    ("address", "region", "ok"),
    [
        (("1 Main St", "", "Springfield", "62701"), "US-IL", True),
        (("1 Main St", "", "Springfield", "62701-1234"), "US-IL", True),
        (("1 Main St", "", "Springfield", "627011234"), "US-IL", True),
        (("1 Main St", "", "Springfield", "6270"), "US-IL", False),
        (("1 Main St", "", "", "62701"), "US-IL", False),
        (("x" * 41, "", "Springfield", "62701"), "US-IL", False),
        (("Hauptstr. 1", "", "Berlin", "10115"), "DE", True),
        (("", "", "", ""), "US-IL", True),
    ],
)
def test_postal_addresses_are_validated(app, address, region, ok):
    with app.test_request_context():
        assert (postal_address_problems(*address, region) == []) is ok


def test_a_nine_digit_zip_is_printed_with_its_hyphen():
    assert normalise_postal_code("627011234") == "62701-1234"


# --- the console ---

STALE = 6 * 60  # seconds: older than the five minutes a print file's download allows


@pytest.fixture
def admin(app, clock):
    from tests.staff_flow import set_up

    client = app.test_client()
    set_up(app, client, "boss@example.com", "admin", clock)
    return client


def test_the_console_shows_letters_due_and_builds_and_downloads_a_batch_with_an_audit_event(
    admin, app, incident, people
):
    from portal.models import AuditEvent
    from tests.customer_flow import csrf_from, run_jobs

    incident.postal_notice = True
    db.session.commit()
    page = admin.get(f"/admin/incidents/{incident.slug}/letters")
    assert page.status_code == 200 and b"Due (not yet printed)" in page.data
    assert b"Not approved yet" in page.data
    refused = admin.post(
        f"/admin/incidents/{incident.slug}/letters/build", data={"csrf_token": csrf_from(page)}
    )
    shown = admin.get(refused.headers["Location"]).get_data(as_text=True)
    assert "Legal has not approved this exactly as it is now." in shown
    assert db.session.scalar(select(Letter.batch_file)) is None
    approve_letters(incident)
    built = admin.post(
        f"/admin/incidents/{incident.slug}/letters/build", data={"csrf_token": csrf_from(page)}
    )
    # A background job, not the request: the admin is shown its progress.
    assert built.status_code == 302 and built.headers["Location"].startswith("/admin/jobs/")
    assert letters.counts(incident).produced == 0
    job_page = admin.get(built.headers["Location"]).get_data(as_text=True)
    assert "Writing the printed letters" in job_page and 'hx-trigger="every 1s"' in job_page
    assert "Refresh" in job_page  # without JavaScript
    run_jobs(app)
    page = admin.get(built.headers["Location"]).get_data(as_text=True)
    assert "4 letter(s) written in 1 file(s)." in page
    assert "-manifest.csv" in page
    name = page.split("/letters/files/")[1].split('"')[0]
    assert name.endswith(".pdf")
    listed = admin.get(f"/admin/incidents/{incident.slug}/letters").get_data(as_text=True)
    assert name in listed
    download = admin.get(f"/admin/incidents/{incident.slug}/letters/files/{name}")
    assert download.status_code == 200 and download.data.startswith(b"%PDF")
    download.close()
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "letters.downloaded" in actions


def test_a_batch_download_with_a_stale_proof_asks_for_it_again(admin, app, incident, people, clock):
    letters.request_letter(incident, people["C-00001"], actor="staff:1")
    letters.build(incident, app.instance_path + f"/letters/{incident.slug}", actor="test")
    db.session.commit()
    name = db.session.scalar(select(Letter.batch_file))
    clock.tick(STALE)
    asked = admin.get(f"/admin/incidents/{incident.slug}/letters/files/{name}")
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/staff/reauth")


def test_only_a_file_of_this_incidents_letters_can_be_downloaded(admin, app, incident, people):
    for name in ("..%2F..%2Fportal.db", "letters-x-0001.pdf", "secret.csv"):
        assert (
            admin.get(f"/admin/incidents/{incident.slug}/letters/files/{name}").status_code == 404
        )


def test_agents_and_strangers_cannot_see_the_letters_page(app, incident, clock):
    from tests.staff_flow import set_up

    stranger = app.test_client()
    assert stranger.get(f"/admin/incidents/{incident.slug}/letters").status_code in (302, 403, 404)
    agent = app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    assert agent.get(f"/admin/incidents/{incident.slug}/letters").status_code in (403, 404)


def test_an_agent_marks_a_customer_for_a_letter_and_sees_their_address_masked(
    app, incident, people, clock
):
    from tests.customer_flow import csrf_from
    from tests.staff_flow import set_up

    agent = app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    public_id = people["C-00002"].public_id
    db.session.commit()
    page = agent.get(f"/staff/customers/{public_id}")
    text = page.get_data(as_text=True)
    assert "Postal address: •••, S•••, CA 941••" in text and "Market" not in text
    marked = agent.post(
        f"/staff/customers/{public_id}/letters/{incident.slug}",
        data={"csrf_token": csrf_from(page)},
    )
    assert marked.status_code == 302
    assert db.session.scalar(select(Letter.reason)) == "agent"
    assert agent.post(f"/staff/customers/{public_id}/letters/{incident.slug}").status_code == 400


# --- the console: recording a mailing from the mail house's manifest ---


def _upload_manifest(admin, slug: str, content: bytes, mailed_on: str):
    import io

    from tests.customer_flow import csrf_from

    page = admin.get(f"/admin/incidents/{slug}/letters")
    return admin.post(
        f"/admin/incidents/{slug}/letters/mailed",
        data={
            "csrf_token": csrf_from(page),
            "mailed_on": mailed_on,
            "manifest": (io.BytesIO(content), "manifest.csv"),
        },
        content_type="multipart/form-data",
    )


def test_the_console_records_a_mailing_from_the_manifest_with_an_audit_event(
    admin, app, incident, people, tmp_path
):
    from portal.models import AuditEvent

    incident.postal_notice = True
    db.session.flush()
    _count, _files, manifest = letters.build(incident, tmp_path, actor="test")
    db.session.commit()
    # As the mail house sends it back: saved again by a spreadsheet, with a byte order mark.
    content = b"\xef\xbb\xbf" + manifest.read_bytes()
    answer = _upload_manifest(admin, incident.slug, content, "2026-11-20")
    assert answer.status_code == 302
    page = admin.get(answer.headers["Location"]).get_data(as_text=True)
    assert "4 letter(s) recorded as mailed on November 20, 2026." in page
    assert "<td>Mailed</td><td>4</td>" in page
    db.session.expire_all()
    assert letters.counts(incident).mailed == 4
    assert letters.mailing_evidence(incident).letters == 4
    assert metrics_mailed(incident) == 4
    assert "letters.mailed" in db.session.scalars(select(AuditEvent.action)).all()
    assert not list((Path(app.instance_path) / "uploads").glob("*.csv"))  # gone once read


def metrics_mailed(incident) -> int:
    return db.session.scalar(select(letters.mailed_count(incident.id)))


@pytest.mark.parametrize(
    ("content", "mailed_on", "message"),
    [
        (b"letter_id\nnot-a-letter\n", "2026-11-20", "are not letters of this incident"),
        (b"name,city\nAnn,Boston\n", "2026-11-20", "it has no letter_id column"),
        (b"\xff\xfe\x00bad", "2026-11-20", "The manifest could not be read."),
        (None, "2099-01-01", "The mailing date is in the future"),
        (None, "", "Give the day the letters were mailed."),
    ],
)
def test_a_bad_manifest_or_date_is_refused_with_a_message_and_changes_nothing(
    admin, app, incident, people, tmp_path, content, mailed_on, message
):
    incident.postal_notice = True
    db.session.flush()
    _count, _files, manifest = letters.build(incident, tmp_path, actor="test")
    db.session.commit()
    answer = _upload_manifest(admin, incident.slug, content or manifest.read_bytes(), mailed_on)
    assert answer.status_code == 302
    page = admin.get(answer.headers["Location"]).get_data(as_text=True)
    assert message in page
    db.session.expire_all()
    assert letters.counts(incident).mailed == 0


def test_a_mailing_sent_on_a_stale_proof_asks_for_it_first(admin, app, incident, people, clock):
    letters.request_letter(incident, people["C-00001"], actor="staff:1")
    _count, _files, manifest = letters.build(incident, app.instance_path + "/built", actor="test")
    db.session.commit()
    clock.tick(STALE)
    asked = _upload_manifest(admin, incident.slug, manifest.read_bytes(), "2026-11-20")
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/staff/reauth")
    db.session.expire_all()
    assert letters.counts(incident).mailed == 0


def test_agents_cannot_record_a_mailing(app, incident, people, clock):
    from tests.staff_flow import set_up

    agent = app.test_client()
    set_up(app, agent, "agent@example.com", "agent", clock)
    db.session.commit()
    refused = agent.post(f"/admin/incidents/{incident.slug}/letters/mailed")
    assert refused.status_code in (400, 403, 404)
