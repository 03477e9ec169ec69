"""A campaign's notices: rendered once per variant, filled per person when sent, and each one
byte for byte the message the composer makes for that person on its own."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select, text, update

from portal.crypto import DecryptionError
from portal.extensions import db
from portal.mail.mime import boundary_for, build_email
from portal.mail.smtp import SMTPTransport
from portal.models import Notice, OutboxMessage, OutboxTemplate
from portal.services import outbox, reference_codes, tokens
from portal.services.imports import import_customers
from portal.services.notices import Variants, queue_notices, variant_of
from portal.services.outbox import Transports, drain, message_bytes
from tests.conftest import customer_row

LONG_ADDRESS = "a.very.long.mailbox.name.that.goes.on.and.on.and.on@subdomain.example.com"


@pytest.fixture
def campaign(incident, write_csv):
    """Five people: two share a variant; one reads Spanish; one has an address long enough
    that its header would fold (the fast path hands that one to the standard library)."""
    rows = [
        customer_row(1, data_classes="payment_card:4242;ssn:6789;full_name"),
        customer_row(2, data_classes="payment_card:1881;ssn:0042;full_name"),
        customer_row(3, locale="es", data_classes="payment_card:7777;email_address"),
        customer_row(4, data_classes="email_address;password"),
        customer_row(5, email=LONG_ADDRESS, data_classes="phone_number:0177;date_of_birth"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    return rows


def _messages() -> list[OutboxMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _composed_alone(app, row: OutboxMessage) -> bytes:
    """The message as every notice was made before templates: the composer in the person's
    language with their own link, code and fragments, built by the standard library (with the
    row's Message-ID, Date and boundary: those are per message in either way)."""
    notice = db.session.get(Notice, row.notice_id)
    customer = notice.customer
    exposures = [
        (e.data_class, e.fragment)
        for e in customer.exposures
        if e.incident_id == notice.incident_id
    ]
    issued_at = json.loads(row.body)["issued_at"]
    link = tokens.link(
        tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce, issued_at=issued_at
    )
    shown, fragments = variant_of(exposures)
    values = {"link": link, "code": reference_codes.display(notice.reference_code), **fragments}
    composed = Variants(notice.incident).compose(
        customer.locale, shown, customer.region, values=values
    )
    return build_email(
        sender=app.config["MAIL_FROM"],
        recipient=customer.email,
        subject=outbox.one_line(composed.subject),
        message_id=row.message_id,
        date=format_datetime(datetime.fromtimestamp(issued_at, UTC)),
        locale=customer.locale,
        text=composed.text,
        html=composed.html,
        boundary=boundary_for(row.message_id),
    )


def test_each_notice_is_byte_for_byte_what_the_composer_makes_for_that_person(app, campaign):
    messages = _messages()
    assert len(messages) == 5
    for row in messages:
        assert message_bytes(row) == _composed_alone(app, row), row.recipient


def test_the_server_gets_exactly_those_bytes_and_the_row_keeps_their_digest(
    app, campaign, smtp_server
):
    sink, controller = smtp_server
    expected = {row.id: _composed_alone(app, row) for row in _messages()}
    transport = Transports(email=SMTPTransport(f"smtp://127.0.0.1:{controller.port}"))
    assert drain(transport).sent == 5
    transport.close()
    for row in _messages():
        assert row.status == "sent" and row.body == b""
        assert row.body_digest == hashlib.sha256(expected[row.id]).digest()
    assert {LONG_ADDRESS, "person3@example.com"} <= {
        rcpt for message in sink.messages for rcpt in message.rcpt_tos
    }


def test_a_message_is_the_same_bytes_at_every_try(app, campaign, clock):
    row = _messages()[0]
    first = message_bytes(row)
    clock.move(timedelta(hours=5))  # a retry hours later: Date, boundary and link as queued
    assert message_bytes(row) == first


def test_the_message_is_stored_once_per_variant_not_once_per_person(app, campaign):
    # Five people, four variants (the first two differ only in their fragments' values).
    assert db.session.scalar(select(func.count()).select_from(OutboxTemplate)) == 4
    sizes = db.session.scalars(select(func.length(OutboxMessage.body_sealed))).all()
    # Each row holds its own values only (a rendered notice is several kilobytes).
    assert len(sizes) == 5 and max(sizes) < 1000


def test_a_rerun_renders_nothing_new(app, incident, campaign):
    assert queue_notices(incident, actor="test") == 0
    assert db.session.scalar(select(func.count()).select_from(OutboxTemplate)) == 4


def test_what_a_campaign_stores_is_sealed_and_bound_to_its_row(app, campaign):
    raw = db.session.execute(
        text("SELECT body_sealed, recipient_sealed FROM outbox_message ORDER BY id")
    ).all()
    notices = db.session.scalars(select(Notice).order_by(Notice.id)).all()
    for (body, recipient), notice in zip(raw, notices, strict=True):
        for secret in (notice.reference_code[:4], notice.public_id, "4242", "person"):
            assert secret.encode() not in bytes(body) + bytes(recipient)
    for text_sealed, html_sealed in db.session.execute(
        text("SELECT text_sealed, html_sealed FROM outbox_template")
    ):
        assert b"Notice of Data Breach" not in bytes(text_sealed) + bytes(html_sealed)
    # One person's values copied into another's row do not open there.
    first, second = _messages()[:2]
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == second.id)
        .values(body_sealed=first.body_sealed)
    )
    db.session.expire_all()
    with pytest.raises(DecryptionError):
        message_bytes(db.session.get(OutboxMessage, second.id))


def test_a_reference_code_already_taken_is_never_given_again(app, incident, write_csv, monkeypatch):
    import_customers(incident, write_csv([customer_row(1)]), actor="test")
    queue_notices(incident, actor="test")
    taken = db.session.scalar(select(Notice.reference_code))
    real = reference_codes.generate_many
    draws = iter([[taken, taken]])  # the first draw repeats a code in use, twice

    def unlucky(count: int) -> list[str]:
        return next(draws, None) or real(count)

    monkeypatch.setattr(reference_codes, "generate_many", unlucky)
    import_customers(
        incident, write_csv([customer_row(1), customer_row(2), customer_row(3)]), actor="test"
    )
    assert queue_notices(incident, actor="test") == 2
    codes = db.session.scalars(select(Notice.reference_code)).all()
    assert len(codes) == len(set(codes)) == 3
    assert all(reference_codes.is_well_formed(code) for code in codes)
