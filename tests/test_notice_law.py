"""What the law asks of a notice (Cal. Civ. Code 1798.82(d)), and the admin's preview of the
exact message each group of readers gets before anything is sent."""

from __future__ import annotations

import json
import re
from datetime import date
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.i18n import breach_dates
from portal.markdown import plain
from portal.models import AuditEvent, Incident, Notice, OutboxMessage
from portal.services import background, notice_preview, reference_codes, tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.outbox import message_bytes
from portal.services.protection import save_offer
from tests.approval_flow import approve_campaign
from tests.conftest import INCIDENT, customer_row
from tests.customer_flow import csrf_from
from tests.staff_flow import set_up

MARKDOWN = {
    "what_happened": "On **2 October** someone used a [stolen key](https://example.com/key) to"
    " copy records.\n\n* names\n* card numbers (last four digits)",
    "what_we_are_doing": "We _revoked_ the key.\n\n1. We hired investigators.\n2. We told the"
    " police.",
    "more_information": "Read our **questions and answers** at"
    " [the help page](https://example.com/help).",
}
# What Markdown leaves behind when shown raw: emphasis, links, list and heading markers.
MARKDOWN_SYNTAX = re.compile(r"\*\*|__|\]\(|^#+ |`|(?<!\w)_\w+_(?!\w)", re.MULTILINE)


@pytest.fixture
def admin(app, clock):
    client = app.test_client()
    set_up(app, client, "boss@example.com", "admin", clock)
    return client


def _notice_of(outbox, address):
    (message,) = [m for m in outbox() if m.recipient == address and m.row.notice_id]
    return message


def _campaign(incident, write_csv, rows):
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()


def _edit(incident: Incident, **fields):
    for name, value in fields.items():
        setattr(incident, name, value)
    db.session.commit()


def test_the_text_part_has_no_markdown_and_the_html_part_renders_it(
    app, incident, write_csv, outbox
):
    _edit(incident, **MARKDOWN)
    _campaign(incident, write_csv, [customer_row(1, email="ann@example.com")])
    message = _notice_of(outbox, "ann@example.com")
    assert MARKDOWN_SYNTAX.search(message.text) is None, MARKDOWN_SYNTAX.search(message.text)
    assert "On 2 October someone used a stolen key (https://example.com/key)" in message.text
    assert "  * card numbers (last four digits)" in message.text
    assert "  2. We told the police." in message.text
    assert "Read our questions and answers at the help page (https://example.com/help)." in (
        message.text
    )
    assert "<strong>2 October</strong>" in message.html
    assert '<a href="https://example.com/help" rel="noopener noreferrer">' in message.html
    assert "**" not in message.html


def test_the_notice_has_californias_title_headings_and_dates_in_order(
    app, incident, write_csv, outbox, clock
):
    _edit(
        incident,
        occurred_on=date(2026, 9, 28),
        occurred_to=date(2026, 10, 2),
        more_information="Questions: see our FAQ.",
    )
    _campaign(incident, write_csv, [customer_row(1, email="ann@example.com")])
    text = _notice_of(outbox, "ann@example.com").text
    headings = [
        "Notice of Data Breach",
        "What Happened",
        "What Information Was Involved",
        "What We Are Doing",
        "What You Can Do",
        "For More Information",
    ]
    places = [text.index(h) for h in headings]
    assert places == sorted(places)
    today = clock.now().date()
    assert f"Date of this notice: {today:%B} {today.day}, {today.year}" in text
    assert "When it happened: between September 28, 2026 and October 2, 2026" in text
    assert "When we found out: October 9, 2026" in text
    assert "This notice was not delayed by a law enforcement investigation." in text
    # The admin's "For More Information" text is in the message (it used to be dropped).
    assert "Questions: see our FAQ." in text.split("For More Information")[1]


def test_a_delay_asked_by_law_enforcement_is_said(app, incident, write_csv, outbox):
    _edit(incident, delayed_by_law_enforcement=True, occurred_on=None)
    _campaign(incident, write_csv, [customer_row(1, email="ann@example.com")])
    text = _notice_of(outbox, "ann@example.com").text
    assert "delayed because a law enforcement agency told us" in text
    assert "When it happened: not known yet" in text


def test_the_spanish_notice_keeps_the_english_title_beside_its_own(
    app, incident, write_csv, outbox
):
    _campaign(incident, write_csv, [customer_row(1, email="eva@example.com", locale="es")])
    message = _notice_of(outbox, "eva@example.com")
    assert message.text.splitlines()[0] == "Aviso de filtración de datos (Notice of Data Breach)"
    assert '<span lang="en"' in message.html and "Notice of Data Breach</span>" in message.html


def test_the_notice_says_how_to_take_up_the_protection_offer(app, incident, write_csv, outbox):
    save_offer(
        incident,
        actor="test",
        provider_name="Example Protection",
        product_name="IdentityGuard Plus",
        includes="Credit monitoring at three bureaus\nIdentity restoration",
        term_months=24,
        enroll_by=date(2027, 3, 1),
        enroll_url="https://enroll.example.com",
        enroll_phone="1-800-555-0142",
        eligible_classes="ssn",
    )
    _campaign(
        incident,
        write_csv,
        [
            customer_row(1, email="ann@example.com", data_classes="ssn:6789"),
            customer_row(2, email="bob@example.com", data_classes="email_address"),
        ],
    )
    offered = _notice_of(outbox, "ann@example.com").text
    offered_part = offered.split("What We Are Doing")[1].split("What You Can Do")[0]
    assert "IdentityGuard Plus from Example Protection for 24 months, at no cost to you" in (
        offered_part
    )
    assert "  * Identity restoration" in offered_part
    assert "enroll at https://enroll.example.com with that code" in offered_part
    assert "by phone at 1-800-555-0142" in offered_part
    assert "Enroll by March 1, 2027." in offered_part
    # Bob's data types do not make him eligible: his notice promises him nothing.
    assert "IdentityGuard" not in _notice_of(outbox, "bob@example.com").text


def test_every_type_size_of_the_html_notice_is_at_least_ten_points(
    app, incident, write_csv, outbox
):
    _edit(incident, **MARKDOWN)
    _campaign(incident, write_csv, [customer_row(1, email="ann@example.com", locale="es")])
    html = _notice_of(outbox, "ann@example.com").html
    sizes = [int(px) for px in re.findall(r"font-size:\s*(\d+)px", html)]
    assert sizes and min(sizes) >= 14  # 10 pt is 13.3 px
    assert not re.search(r"font-size:\s*[\d.]+(em|rem|%|pt)", html)


# --- the preview ---


def test_the_groups_count_readers_by_language_and_region(app, incident, write_csv):
    rows = [
        customer_row(1),
        customer_row(2),
        customer_row(3, locale="es"),
        customer_row(4, region="DE"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    groups = notice_preview.groups(incident)
    assert [(g.locale, g.region, g.affected, g.waiting) for g in groups] == [
        ("en", "DE", 1, 1),
        ("en", "US-CA", 2, 2),
        ("es", "US-CA", 1, 1),
    ]
    queue_notices(incident, actor="test")
    assert [g.waiting for g in notice_preview.groups(incident)] == [0, 0, 0]


def test_the_preview_is_the_message_the_worker_sends_but_for_link_and_code(
    app, incident, write_csv
):
    _edit(incident, **MARKDOWN)
    rows = [customer_row(1, email="ann@example.com", locale="es", data_classes="ssn:6789")]
    import_customers(incident, write_csv(rows), actor="test")
    reader = notice_preview.sample_reader(incident, locale="es", region="US-CA")
    shown = notice_preview.preview(incident, reader, actor="boss@example.com", named=True)
    queue_notices(incident, actor="test")
    db.session.commit()
    row = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.notice_id.is_not(None))
    ).one()
    stored = json.loads(row.body)
    assert stored["template"] == shown.digest  # the very template the worker fills
    notice = db.session.get(Notice, row.notice_id)
    link = tokens.link(
        tokens.Purpose.NOTICE_LINK,
        notice.public_id,
        notice.link_nonce,
        issued_at=stored["issued_at"],
    )
    sent = message_from_bytes(message_bytes(row), policy=default_policy)
    previewed = message_from_bytes(shown.message, policy=default_policy)
    for part in ("plain", "html"):
        expected = sent.get_body((part,)).get_content()
        got = previewed.get_body((part,)).get_content()
        got = got.replace(
            "https://portal.example.test" + notice_preview.PREVIEW_LINK_PATH, link
        ).replace(notice_preview.PREVIEW_CODE, reference_codes.display(notice.reference_code))
        assert got == expected
    assert sent["Subject"] == previewed["Subject"]
    assert "6789" in shown.composed.text  # the reader's own masked fragment


def _previews() -> list[AuditEvent]:
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "notice.previewed")
    ).all()


def test_a_groups_preview_names_nobody_and_shows_no_ones_digits(admin, incident, write_csv):
    _edit(incident, **MARKDOWN)
    rows = [customer_row(1), customer_row(2, locale="es", external_id="X-77")]
    import_customers(incident, write_csv(rows), actor="test")
    db.session.commit()
    campaign = admin.get("/admin/incidents/acme-2026/campaign").get_data(as_text=True)
    assert "locale=es&amp;region=US-CA" in campaign
    assert (
        "<title>Notice campaign" in campaign
        and "<title>Notice campaign<" not in campaign.replace("<title>Notice campaign", "", 1)
    )
    page = admin.get("/admin/incidents/acme-2026/campaign/preview?locale=es&region=US-CA")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Aviso de filtración de datos (Notice of Data Breach)" in body
    text = body.split('<pre class="message-text">')[1]
    assert "**" not in text and "••••" in text
    assert "4242" not in body and "6789" not in body and "X-77" not in body
    frame_src = body.split('class="message-preview"')[1].split('src="')[1].split('"')[0]
    assert "X-77" not in frame_src
    frame = admin.get(frame_src.replace("&amp;", "&"))
    assert frame.status_code == 200 and b"<strong>2 October</strong>" in frame.data
    assert b"4242" not in frame.data
    policy = frame.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "script" not in policy
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert len(_previews()) == 1  # the page, not its frame again


def test_a_readers_preview_is_asked_for_by_post_and_shows_their_own_digits(
    admin, incident, write_csv
):
    rows = [customer_row(1), customer_row(2, locale="es", external_id="X-77")]
    import_customers(incident, write_csv(rows), actor="test")
    db.session.commit()
    page = admin.get("/admin/incidents/acme-2026/campaign")
    shown = admin.post(
        "/admin/incidents/acme-2026/campaign/preview",
        data={"csrf_token": csrf_from(page), "external_id": "X-77"},
    )
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "The notice as X-77 will get it" in body
    assert "4242" in body.split('<pre class="message-text">')[1]
    frame_src = body.split('class="message-preview"')[1].split('src="')[1].split('"')[0]
    assert "X-77" not in frame_src and "reader=" in frame_src  # our random id, not theirs
    assert b"4242" in admin.get(frame_src.replace("&amp;", "&")).data
    missing = admin.post(
        "/admin/incidents/acme-2026/campaign/preview",
        data={"csrf_token": csrf_from(page), "external_id": "nobody"},
    )
    assert missing.status_code == 302
    after = admin.get(missing.headers["Location"]).get_data(as_text=True)
    assert "Nobody affected by this incident has that id." in after
    forged = admin.post("/admin/incidents/acme-2026/campaign/preview", data={"external_id": "X-77"})
    assert forged.status_code == 400


def test_sending_asks_to_confirm_the_counts_and_refuses_when_they_changed(
    admin, incident, write_csv
):
    import_customers(
        incident, write_csv([customer_row(1), customer_row(2, locale="es")]), actor="t"
    )
    db.session.commit()
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    body = page.get_data(as_text=True)
    assert "Send 2 notices" in body and "<td>es</td><td>US-CA</td><td>1</td>" in body
    assert "In all" in body
    approve_campaign(incident)
    # Someone imports a third person before the admin presses the button.
    import_customers(incident, write_csv([customer_row(3)]), actor="t")
    db.session.commit()
    refused = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "2"},
    )
    assert refused.headers["Location"] == "/admin/incidents/acme-2026/campaign/confirm"
    again = admin.get(refused.headers["Location"]).get_data(as_text=True)
    assert "The numbers changed since you looked" in again and "Send 3 notices" in again
    assert db.session.scalars(select(Notice)).all() == []


def test_the_incident_page_gives_the_breachs_date_range_as_the_notice_does(
    client, incident, write_csv
):
    _edit(incident, occurred_on=date(2026, 9, 28), occurred_to=date(2026, 10, 2))
    import_customers(incident, write_csv([customer_row(1)]), actor="t")
    queue_notices(incident, actor="t")  # announced: its public page exists
    db.session.commit()
    page = client.get("/incidents/acme-2026").get_data(as_text=True)
    assert "When it happened: between September 28, 2026 and October 2, 2026" in page


def test_a_campaign_confirmed_before_an_import_sends_nothing_after_it(admin, incident, write_csv):
    import_customers(incident, write_csv([customer_row(1)]), actor="t")
    db.session.commit()
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    started = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    assert started.headers["Location"].startswith("/admin/jobs/")
    # The job waits in the queue; an import adds someone the admin did not see counted.
    import_customers(incident, write_csv([customer_row(2)]), actor="t")
    db.session.commit()
    background.run_one()
    report = admin.get(started.headers["Location"]).get_data(as_text=True)
    assert "changed after you confirmed it (an import ran): nothing was sent" in report
    assert db.session.scalars(select(Notice)).all() == []
    odd = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "\u00b2"},
    )
    assert odd.headers["Location"] == "/admin/incidents/acme-2026/campaign/confirm"


def test_words_changed_between_send_and_the_jobs_start_are_not_sent_unapproved(
    admin, incident, write_csv
):
    import_customers(incident, write_csv([customer_row(1)]), actor="t")
    db.session.commit()
    approve_campaign(incident)
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    started = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    assert started.headers["Location"].startswith("/admin/jobs/")
    # The job waits in the queue; meanwhile someone edits what the notice says.
    incident.what_happened = "A text legal never saw."
    db.session.commit()
    background.run_one()
    report = admin.get(started.headers["Location"]).get_data(as_text=True)
    assert "changed after legal approved them: nothing was sent" in report
    assert db.session.scalars(select(Notice)).all() == []
    # Put back as approved, the same campaign goes out.
    incident.what_happened = INCIDENT["what_happened"]
    db.session.commit()
    page = admin.get("/admin/incidents/acme-2026/campaign/confirm")
    again = admin.post(
        "/admin/incidents/acme-2026/campaign/send",
        data={"csrf_token": csrf_from(page), "expected": "1"},
    )
    background.run_one()
    assert "1 notice(s) queued" in admin.get(again.headers["Location"]).get_data(as_text=True)
    assert len(db.session.scalars(select(Notice)).all()) == 1


def test_markdown_as_text_keeps_tight_lists_tight_and_only_the_links_the_html_keeps():
    source = (
        "* one\n  * a\n  * b\n* two\n\n1. first\n2. second\n\n"
        "[bad](http://insecure.example) [ok](https://ok.example) ![x](https://img.example/x.png)"
    )
    assert plain(source) == (
        "  * one\n      * a\n      * b\n  * two\n\n  1. first\n  2. second\n\n"
        "bad ok (https://ok.example) "
    )


def test_only_the_last_day_of_a_breach_known_is_said_as_such(app, incident):
    _edit(incident, occurred_on=None, occurred_to=date(2026, 10, 2))
    with app.test_request_context():
        assert breach_dates(incident) == "on or before October 2, 2026"


@pytest.mark.parametrize(
    ("region", "present", "absent"),
    [
        ("US-MA", ["For residents of Massachusetts"], ["Someone copied part of our customer"]),
        (
            "DE",
            ["Your rights under the General Data Protection Regulation"],
            ["The Federal Trade Commission", "For residents of"],
        ),
        (
            "US-RI",
            ["For residents of Rhode Island", "This incident affected 2 people."],
            [],
        ),
    ],
)
def test_the_personal_page_says_what_the_law_where_they_live_asks(
    app, incident, write_csv, region, present, absent
):
    from tests.customer_flow import sign_in

    rows = [customer_row(1, email="ann@example.com", region=region), customer_row(2)]
    _campaign(incident, write_csv, rows)
    client = app.test_client()
    sign_in(client, "ann@example.com")
    page = client.get("/me").get_data(as_text=True)
    for words in present:
        assert words in page
    for words in absent:
        assert words not in page
