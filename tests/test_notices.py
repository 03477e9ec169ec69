"""Queueing the 'Notice of Data Breach': once per customer, personal, and safe to forward."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Notice, OutboxMessage
from portal.services import reference_codes, tokens
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.approval_flow import approve_campaign
from tests.conftest import BASE_URL, customer_row, pg_url

HEADINGS = [
    "Notice of Data Breach",
    "What Happened",
    "What Information Was Involved",
    "What We Are Doing",
    "What You Can Do",
    "For More Information",
]


@pytest.fixture
def imported(incident, write_csv):
    rows = [
        customer_row(
            1,
            full_name="Zelda Quixote",
            email="zelda@example.com",
            phone="+14155550177",
            data_classes="payment_card:4242;ssn:6789;full_name;phone_number:0177",
        ),
        customer_row(2, locale="es", data_classes="email_address;password"),
        customer_row(3, data_classes="medical_records"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    return rows


def test_the_command_refuses_a_campaign_legal_has_not_approved(runner, incident, imported, outbox):
    refused = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])
    assert refused.exit_code != 0
    assert "not approved as they are now: nothing was queued" in refused.output
    assert db.session.scalar(select(func.count()).select_from(Notice)) == 0 and outbox() == []


def test_a_change_after_approval_needs_approving_again_before_the_command_sends(
    runner, incident, imported, write_csv, outbox
):
    approve_campaign(incident)
    # One more person imported after legal approved: the counts legal saw are not these.
    import_customers(incident, write_csv([customer_row(7)]), actor="test")
    refused = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])
    assert refused.exit_code != 0 and outbox() == []
    approve_campaign(incident)
    assert (
        "Queued 4 notice(s)."
        in runner.invoke(args=["notices", "send", "--incident", "acme-2026"]).output
    )


def test_sending_twice_queues_exactly_one_notice_per_customer(runner, incident, imported, outbox):
    approve_campaign(incident)
    first = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])
    second = runner.invoke(args=["notices", "send", "--incident", "acme-2026"])

    assert "Queued 3 notice(s)." in first.output
    assert "Queued 0 notice(s)." in second.output
    assert db.session.scalar(select(func.count()).select_from(Notice)) == 3
    messages = outbox()
    assert len(messages) == 3
    assert sorted(m.recipient for m in messages) == [
        "person2@example.com",
        "person3@example.com",
        "zelda@example.com",
    ]
    assert all(m.row.status == "queued" for m in messages)


def test_notice_is_queued_in_batches_with_one_message_each(app, incident, imported, outbox):
    assert queue_notices(incident, actor="test", batch_size=2) == 3
    notices = db.session.scalars(select(Notice)).all()
    assert {m.row.notice_id for m in outbox()} == {n.id for n in notices}
    assert all(n.queued_at is not None for n in notices)


def _zelda(outbox):
    return next(m for m in outbox() if m.recipient == "zelda@example.com")


def test_notice_text_follows_the_california_model(app, incident, imported, outbox):
    queue_notices(incident, actor="test")
    message = _zelda(outbox)

    for part in (message.text, message.html):
        positions = [part.index(heading) for heading in HEADINGS]
        assert positions == sorted(positions), "headings out of order"
        assert "Payment card number (card ending 4242)" in part
        assert "Social Security number (ending 6789)" in part
        assert "Phone number (ending 0177)" in part
        assert "Full name" in part
        assert "1-800-555-0199" in part
        assert "Monday to Friday, 8 am to 8 pm" in part
    assert message.row.subject == "Notice of Data Breach from Example Corp"


def test_notice_carries_a_working_link_on_its_own_line_and_a_reference_code(
    app, incident, imported, outbox
):
    queue_notices(incident, actor="test")
    message = _zelda(outbox)
    notice = db.session.get(Notice, message.row.notice_id)

    links = [line for line in message.text.splitlines() if line.startswith(BASE_URL + "/a/")]
    assert len(links) == 1
    link = links[0]
    assert link == link.strip() and " " not in link
    assert tokens.load(tokens.Purpose.NOTICE_LINK, link.removeprefix(BASE_URL + "/a/")) == (
        notice.public_id,
        notice.link_nonce,
    )
    assert f'href="{link}"' in message.html

    printed = reference_codes.display(notice.reference_code)
    assert re.fullmatch(
        r"[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}", printed
    )
    assert reference_codes.is_well_formed(notice.reference_code)
    assert printed in message.text and printed in message.html


def test_notice_holds_no_exposed_value_beyond_the_masked_fragment(app, incident, imported, outbox):
    queue_notices(incident, actor="test")
    message = _zelda(outbox)
    for part in (message.text, message.html, message.row.subject):
        assert "Zelda" not in part and "Quixote" not in part  # the name was exposed
        assert "zelda@example.com" not in part
        assert "4155550177" not in part
        assert "C-00001" not in part  # the organisation's own identifier


def test_link_tokens_are_bound_to_their_purpose_and_signature(app, incident, imported, outbox):
    queue_notices(incident, actor="test")
    token = _zelda(outbox).text.split(BASE_URL + "/a/")[1].split()[0]

    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(tokens.InvalidToken):
        tokens.load(tokens.Purpose.NOTICE_LINK, tampered)
    other_purpose = tokens._serializer("pwreset-v1").dumps(["x", "y"])
    with pytest.raises(tokens.InvalidToken):
        tokens.load(tokens.Purpose.NOTICE_LINK, other_purpose)


def test_link_expires_after_its_lifetime(app, incident, imported, outbox, clock):
    from datetime import timedelta

    queue_notices(incident, actor="test")
    token = _zelda(outbox).text.split(BASE_URL + "/a/")[1].split()[0]
    clock.move(app.config["NOTICE_LINK_TTL"] - timedelta(minutes=1))
    assert tokens.load(tokens.Purpose.NOTICE_LINK, token)  # still good on its last day
    clock.move(timedelta(minutes=2))
    with pytest.raises(tokens.ExpiredToken):
        tokens.load(tokens.Purpose.NOTICE_LINK, token)


def test_spanish_speaker_gets_the_notice_in_spanish(app, incident, imported, outbox):
    queue_notices(incident, actor="test")
    spanish = next(m for m in outbox() if m.recipient == "person2@example.com")
    english = next(m for m in outbox() if m.recipient == "person3@example.com")

    assert spanish.row.locale == "es"
    assert spanish.row.subject == "Aviso de filtración de datos de Example Corp"
    for heading in (
        "Aviso de filtración de datos",
        "Qué ocurrió",
        "Qué información se vio afectada",
        "Qué estamos haciendo",
        "Qué puede hacer usted",
        "Para más información",
    ):
        assert heading in spanish.text and heading in spanish.html
    assert "Contraseña de su cuenta" in spanish.text
    assert "octubre de 2026" in spanish.text  # dates in Spanish too
    assert "What Happened" in english.text and "Qué ocurrió" not in english.text


def test_only_affected_customers_of_this_incident_are_notified(app, incident, imported, write_csv):
    from datetime import date

    from portal.services.incidents import create_incident

    other = create_incident(
        slug="other-2026", title="Another incident", discovered_on=date(2026, 11, 1), actor="test"
    )
    import_customers(other, write_csv([customer_row(9)]), actor="test")

    assert queue_notices(other, actor="test") == 1
    assert queue_notices(incident, actor="test") == 3
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 4


def test_notices_are_audited(app, incident, imported):
    queue_notices(incident, actor="cli:bob")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "notices.queued"))
    assert event.actor == "cli:bob"
    assert event.details == '{"count":3}'


def _each_once(people: int = 3) -> None:
    notices = db.session.scalars(select(Notice)).all()
    assert len(notices) == people and len({n.customer_id for n in notices}) == people
    messages = db.session.scalars(select(OutboxMessage)).all()
    assert sorted(m.notice_id for m in messages) == sorted(n.id for n in notices)


def test_a_run_stopped_half_way_and_run_again_queues_each_person_once(
    app, incident, imported, monkeypatch
):
    from portal.services import notices

    db.session.commit()  # the customers are kept; the run's own batches are what is tested
    prepared = []
    real = notices._prepare

    def prepare(*args, **kwargs):
        prepared.append(True)
        if len(prepared) == 2:  # PostgreSQL: while the first batch is being written
            raise RuntimeError("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(notices, "_prepare", prepare)
    with pytest.raises(RuntimeError, match="stopped"):
        queue_notices(incident, actor="test", batch_size=1)
    db.session.rollback()  # as the command's unit of work does
    kept = db.session.scalar(select(func.count()).select_from(Notice))
    assert kept <= 1  # the batch in hand went with the stop, whole, with its messages
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == kept

    monkeypatch.setattr(notices, "_prepare", real)
    assert queue_notices(incident, actor="test", batch_size=1) == 3 - kept
    _each_once()
    assert queue_notices(incident, actor="test", batch_size=1) == 0
    _each_once()


@pytest.mark.postgres
@pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)")
def test_a_batch_whose_insert_fails_stops_the_run_and_keeps_nothing_of_it(
    app, incident, imported, monkeypatch
):
    from portal.services import notices

    # The statement runs beside the next batch's preparation: its failure must still end the run.
    db.session.commit()  # the customers are kept; the run's own batches are what is tested
    statement = notices._INSERT_BATCH_DRIVER
    monkeypatch.setattr(notices, "_INSERT_BATCH_DRIVER", "SELECT 1 / 0")
    with pytest.raises(Exception, match="division by zero"):
        queue_notices(incident, actor="test", batch_size=2)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Notice)) == 0
    monkeypatch.setattr(notices, "_INSERT_BATCH_DRIVER", statement)
    assert queue_notices(incident, actor="test", batch_size=2) == 3
    _each_once()


def test_compiled_catalogues_match_their_sources():
    from pathlib import Path

    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    from portal import ROOT

    def both(value):  # a plural's forms come as a list from one reader, a tuple from the other
        return tuple(value) if isinstance(value, list | tuple) else value

    for po_path in Path(ROOT, "portal", "translations").glob("*/LC_MESSAGES/messages.po"):
        with po_path.open("rb") as handle:
            source = {both(m.id): both(m.string) for m in read_po(handle) if m.id and m.string}
        with po_path.with_suffix(".mo").open("rb") as handle:
            compiled = {both(m.id): both(m.string) for m in read_mo(handle) if m.id and m.string}
        assert compiled == source, f"run `make translations` ({po_path.parent.parent.name})"


def test_reference_code_check_character_catches_a_typo():
    code = reference_codes.generate()
    assert reference_codes.is_well_formed(code)
    assert reference_codes.normalise(" " + reference_codes.display(code).lower() + " ") == code
    for i in range(len(code)):
        for replacement in reference_codes.ALPHABET:
            if replacement != code[i]:
                typo = code[:i] + replacement + code[i + 1 :]
                assert not reference_codes.is_well_formed(typo)


def test_each_notice_gets_its_own_random_ids_from_the_batch_read(incident, imported):
    """The batch's ids come from one read of the OS's CSPRNG: each public id and link nonce is
    still 16 random bytes in token_urlsafe's form, and every Message-ID is unique to its
    message, of this portal's host (a slice used twice would give two notices one link)."""
    queue_notices(incident, actor="test")
    notices = db.session.scalars(select(Notice)).all()
    messages = db.session.scalars(select(OutboxMessage)).all()
    ids = [n.public_id for n in notices] + [n.link_nonce for n in notices]
    assert len(notices) == 3 and len(set(ids)) == 6
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", value) for value in ids)
    host = BASE_URL.split("://", 1)[1].split(":")[0].split("/")[0]
    message_ids = [m.message_id for m in messages]
    assert len(set(message_ids)) == 3
    assert all(re.fullmatch(r"<[0-9a-f]{32}@" + re.escape(host) + ">", m) for m in message_ids)


def test_customers_imported_in_the_same_transaction_are_all_notified_batch_by_batch(
    app, incident, write_csv
):
    # Not committed before the run: the batches after the first are read while the one before
    # is written (PostgreSQL, on a connection of the run's own), and must still see them all.
    rows = [customer_row(n, data_classes="payment_card:4242;ssn") for n in range(1, 7)]
    import_customers(incident, write_csv(rows), actor="test")

    assert queue_notices(incident, actor="test", batch_size=1) == 6
    _each_once(6)
    assert queue_notices(incident, actor="test", batch_size=1) == 0


def test_a_queued_body_is_the_templated_body_of_its_values(app, incident, write_csv, outbox):
    from portal.models import Exposure
    from portal.services import outbox as outbox_service

    # Fragments a JSON string must escape, and some not ASCII (an import allows letters and
    # digits only; a fragment set otherwise must still come out as the worker reads it).
    fragments = ['4"42', "\\9\\", "é9ñ", "12</", "AB9z"]
    rows = [
        customer_row(n + 1, data_classes="payment_card:0000;ssn:6789;full_name")
        for n in range(len(fragments))
    ]
    import_customers(incident, write_csv(rows), actor="test")
    cards = db.session.scalars(
        select(Exposure).where(Exposure.data_class == "payment_card").order_by(Exposure.id)
    ).all()
    for exposure, fragment in zip(cards, fragments, strict=True):
        exposure.fragment = fragment
    db.session.flush()
    assert queue_notices(incident, actor="test") == len(fragments)

    seen = set()
    for message in outbox():
        row = message.row
        body = row.body.decode()
        stored = json.loads(body)
        assert (
            body
            == outbox_service.templated_body(
                template=stored["template"],
                issued_at=stored["issued_at"],
                values=stored["values"],
                links=stored["links"],
            ).decode()
        )
        values = stored["values"]
        assert sorted(values) == ["code", "f0", "f1"] and "6789" in (values["f0"], values["f1"])
        seen |= {values["f0"], values["f1"]} - {"6789"}
    assert seen == set(fragments)
