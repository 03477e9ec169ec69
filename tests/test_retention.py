"""Retention: a delivered code or link leaves no copy in the outbox, and finished messages, used
codes and ended sessions are deleted once past their documented periods."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock as portal_clock
from portal.extensions import db
from portal.mail.compose import compose_code
from portal.models import AuditEvent, Challenge, Customer, LoginSession, OutboxMessage
from portal.services import background, outbox, sessions
from portal.services.imports import import_customers
from portal.services.outbox import Transports, open_message
from tests.conftest import customer_row

CODE = "493817"


class Recorder:
    """An email transport that keeps what it was handed."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, sender: str, recipient: str, body: bytes) -> None:
        self.sent.append(body)

    def close(self) -> None:
        pass


def _queue_code(key: str, **extra) -> OutboxMessage:
    return outbox.queue_message(
        compose_code,
        to="ann@example.com",
        locale="en",
        dedupe_key=key,
        code=CODE,
        ttl_minutes=10,
        **extra,
    )


def _row(key: str) -> OutboxMessage:
    db.session.expire_all()
    return db.session.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).one()


def test_a_delivered_code_message_keeps_only_a_digest_of_its_body(app):
    _queue_code("code:1")
    db.session.commit()
    assert CODE in open_message(_row("code:1")).text  # waiting: the worker still needs it
    transport = Recorder()

    result = outbox.deliver_batch(Transports(email=transport))
    db.session.commit()

    assert result.sent == 1 and CODE.encode() in transport.sent[0]
    row = _row("code:1")
    assert row.status == "sent" and row.body == b"" and CODE not in open_message(row).text
    assert row.body_digest == hashlib.sha256(transport.sent[0]).digest()
    assert row.body_purged_at is not None


def test_a_code_message_that_expired_unsent_keeps_no_body_either(app, clock):
    _queue_code("code:late", expires_at=portal_clock.now() + timedelta(minutes=10))
    db.session.commit()
    clock.move(timedelta(minutes=11))

    assert outbox.deliver_batch(Transports(email=Recorder())).expired == 1
    db.session.commit()

    row = _row("code:late")
    assert row.status == "expired" and row.body == b"" and row.body_digest is not None


@pytest.fixture
def customer(app, incident, write_csv) -> Customer:
    import_customers(incident, write_csv([customer_row(1, email="ann@example.com")]), actor="t")
    return db.session.scalars(select(Customer)).one()


def _challenge(customer: Customer, *, used: bool) -> Challenge:
    now = portal_clock.now()
    row = Challenge(
        public_id=secrets.token_hex(16),
        customer_id=customer.id,
        channel="email",
        code_digest=secrets.token_bytes(32),
        expires_at=now + timedelta(minutes=10),
        consumed_at=now if used else None,
        created_at=now,
    )
    db.session.add(row)
    db.session.flush()
    return row


def _ended_session(customer: Customer) -> None:
    sessions.end_session(sessions.open_session(customer, verified_at=portal_clock.now()))


def test_retention_run_deletes_only_what_is_past_its_period(app, runner, clock, customer):
    _queue_code("old:sent")
    _queue_code("old:queued", sms=True)  # not sent (no SMS transport here): kept, however old
    outbox.deliver_batch(Transports(email=Recorder()))
    _challenge(customer, used=True), _challenge(customer, used=False)
    _ended_session(customer)
    old_live = sessions.open_session(customer, verified_at=portal_clock.now())
    db.session.commit()

    clock.move(timedelta(days=31))
    _queue_code("new:sent")
    outbox.deliver_batch(Transports(email=Recorder()))
    new_used = _challenge(customer, used=True).id
    _ended_session(customer)
    live = sessions.open_session(customer, verified_at=portal_clock.now())
    db.session.commit()

    result = runner.invoke(args=["retention", "run"])

    assert result.exit_code == 0, result.output
    assert "messages   deleted 1 (kept 30 days)" in result.output
    assert "challenges deleted 2 (kept 30 days)" in result.output
    assert "sessions   deleted 2 (kept 30 days)" in result.output  # one ended, one idle 31 days
    db.session.expire_all()
    keys = set(db.session.scalars(select(OutboxMessage.dedupe_key)))
    assert keys == {"old:queued", "new:sent"}
    assert set(db.session.scalars(select(Challenge.id))) == {new_used}  # the two old ones gone
    left = list(db.session.scalars(select(LoginSession)))
    assert len(left) == 2 and sessions.load_session(live) is not None
    assert sessions.load_session(old_live) is None
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.ran"))
    assert event.one().details == '{"challenges":2,"messages":1,"sessions":2}'


def test_challenges_inside_the_verification_lock_window_are_kept(app, customer):
    app.config["CHALLENGE_RETENTION_TTL"] = timedelta(hours=1)  # shorter than the lock window
    used = _challenge(customer, used=True)
    used.created_at = used.consumed_at = portal_clock.now() - timedelta(hours=2)
    db.session.commit()

    from portal.services import retention

    assert retention.run()["challenges"] == 0  # the lock still counts it (24 hours)
    assert db.session.get(Challenge, used.id) is not None


def test_retention_is_a_background_job_registered_by_name(app, clock, customer):
    _challenge(customer, used=True)
    db.session.commit()
    clock.move(timedelta(days=31))
    job = background.submit("retention", {}, actor="test")
    db.session.commit()

    done = background.run_one()
    db.session.commit()

    assert done.public_id == job.public_id and done.status == "done"
    assert background.report(done)["challenges"] == 1
    assert db.session.scalars(select(Challenge)).all() == []


def test_in_development_the_mailbox_copy_stays_readable_after_delivery(app):
    from portal.mail.sms import DevMailbox

    _queue_code("code:dev")
    db.session.commit()

    assert outbox.deliver_batch(Transports(email=DevMailbox())).sent == 1
    db.session.commit()

    # /dev/mail reads the outbox row: it is the only copy there is.
    row = _row("code:dev")
    assert row.status == "sent" and CODE in open_message(row).text


@pytest.mark.parametrize("value", ["0", "-3", "a month", "1.5"])
def test_a_retention_period_that_is_not_a_number_of_days_stops_the_start(value, database_url):
    from portal.config import ConfigError, load
    from tests.conftest import base_env

    env = base_env(database_url, PORTAL_SENT_MESSAGE_RETENTION_DAYS=value)
    with pytest.raises(ConfigError, match="PORTAL_SENT_MESSAGE_RETENTION_DAYS must be a whole"):
        load(env)
    assert load(base_env(database_url))["SENT_MESSAGE_RETENTION_TTL"] == timedelta(days=30)
