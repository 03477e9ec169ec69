"""The outbox over a real SMTP server on loopback: at least once, never lost, never doubled."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from portal import clock as portal_clock
from portal.extensions import db
from portal.mail.smtp import SMTPTransport
from portal.models import AuditEvent, Notice, OutboxMessage
from portal.services import outbox as outbox_service
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.outbox import Transports
from tests.conftest import SMTPSink, base_env, customer_row, free_port, pg_url


def queue(n: int, **kwargs) -> None:
    for i in range(n):
        outbox_service.enqueue_email(
            dedupe_key=f"test:{i}",
            recipient=f"person{i}@example.com",
            subject="Hello",
            text=f"text {i}",
            html=f"<p>html {i}</p>",
            **kwargs,
        )
    db.session.commit()


def rows() -> list[OutboxMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def smtp_url(controller) -> str:
    return f"smtp://{controller.hostname}:{controller.port}"


def test_work_once_delivers_every_queued_message_exactly_once(
    runner, app, incident, write_csv, smtp_server
):
    sink, controller = smtp_server
    import_customers(incident, write_csv([customer_row(n) for n in range(1, 8)]), actor="test")
    queue_notices(incident, actor="test")
    app.config["SMTP_URL"] = smtp_url(controller)

    result = runner.invoke(args=["outbox", "work", "--once"])
    again = runner.invoke(args=["outbox", "work", "--once"])

    assert "Sent 7" in result.output, result.output
    assert "Sent 0" in again.output
    assert len(sink.messages) == 7
    assert sorted(sink.message_ids()) == sorted(r.message_id for r in rows())
    assert all(r.status == "sent" and r.attempts == 1 for r in rows())
    assert all(n.sent_at is not None for n in db.session.scalars(select(Notice)))
    received = email.message_from_bytes(sink.messages[0].content)
    assert received["Subject"] == "Notice of Data Breach from Example Corp"
    assert received["From"] == "notices@example.test"
    assert received.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in received.get_payload()] == ["text/plain", "text/html"]


def test_refused_connection_keeps_messages_queued_with_growing_backoff(app, smtp_server):
    sink, _controller = smtp_server
    port = free_port()  # nothing listens here yet
    queue(5)
    transport = Transports(email=SMTPTransport(f"smtp://127.0.0.1:{port}", timeout=2))

    now = portal_clock.now()
    first = outbox_service.drain(transport, now=now)
    after_first = [r.next_attempt_at for r in rows()]
    later = max(after_first) + timedelta(seconds=1)
    outbox_service.drain(transport, now=later)
    after_second = [r.next_attempt_at for r in rows()]

    assert (first.sent, first.retried) == (0, 5)
    assert all(r.status == "queued" and r.attempts == 2 for r in rows())
    assert all(t > now for t in after_first)
    assert all(b - later > a - now for a, b in zip(after_first, after_second, strict=True))
    assert "cannot connect" in rows()[0].last_error

    # The server comes back: every message goes, once.
    revived = Controller(sink, hostname="127.0.0.1", port=port)
    revived.start()
    try:
        result = outbox_service.drain(transport, now=max(after_second) + timedelta(seconds=1))
        outbox_service.drain(transport, now=max(after_second) + timedelta(hours=2))
    finally:
        transport.close()
        revived.stop()
    assert result.sent == 5
    assert len(sink.messages) == 5
    assert len(set(sink.message_ids())) == 5
    assert all(r.status == "sent" for r in rows())


def test_recipient_rejected_with_550_ends_as_failed(app, runner, smtp_server, client):
    sink, controller = smtp_server
    sink.refuse["person1@example.com"] = "550 5.1.1 <person1@example.com>: no such user"
    queue(3)
    transport = Transports(email=SMTPTransport(smtp_url(controller)))

    result = outbox_service.drain(transport)
    transport.close()

    assert (result.sent, result.failed) == (2, 1)
    failed = rows()[1]
    assert failed.status == "failed"
    assert "550" in failed.last_error
    assert "person1@example.com" not in failed.last_error  # no address kept in the error
    status = runner.invoke(args=["outbox", "status"])
    assert "failed   1" in status.output and "sent     2" in status.output
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "outbox.failed"))
    assert event.subject_id == str(failed.id)


def test_temporary_rejection_is_retried_until_max_attempts(app, smtp_server):
    sink, controller = smtp_server
    sink.refuse["person0@example.com"] = "451 4.3.0 try again later"
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    queue(1)
    transport = Transports(email=SMTPTransport(smtp_url(controller)))

    now = portal_clock.now()
    for _attempt in range(3):
        outbox_service.drain(transport, now=now)
        (row,) = rows()
        now = row.next_attempt_at + timedelta(seconds=1)
    transport.close()

    (row,) = rows()
    assert row.attempts == 3
    assert row.status == "failed"
    assert "451" in row.last_error
    assert sink.messages == []


def test_expired_message_is_dropped_not_sent_late(app, smtp_server):
    sink, controller = smtp_server
    queue(1, expires_at=portal_clock.now() + timedelta(minutes=10))
    transport = Transports(email=SMTPTransport(smtp_url(controller)))

    result = outbox_service.drain(transport, now=portal_clock.now() + timedelta(minutes=11))
    transport.close()

    assert result.expired == 1
    assert rows()[0].status == "expired"
    assert sink.messages == []


def test_rolled_back_transaction_queues_nothing(app):
    outbox_service.enqueue_email(
        dedupe_key="x", recipient="a@example.com", subject="s", text="t", html="h"
    )
    db.session.rollback()
    assert rows() == []


def test_worker_killed_mid_batch_loses_nothing(app, smtp_server):
    sink, controller = smtp_server
    queue(10)
    real = Transports(email=SMTPTransport(smtp_url(controller)))

    class DiesAfterThree:
        sent = 0

        def send(self, sender, recipient, message):
            if self.sent == 3:
                raise KeyboardInterrupt  # the process is killed here
            real.email.send(sender, recipient, message)
            self.sent += 1

    with pytest.raises(KeyboardInterrupt):
        outbox_service.deliver_batch(Transports(email=DiesAfterThree()))
    db.session.rollback()
    assert all(r.status == "queued" for r in rows())

    outbox_service.drain(real)
    real.close()
    # At least once: the three the server took before the crash went again; none was lost.
    assert {r.status for r in rows()} == {"sent"}
    assert set(sink.message_ids()) == {r.message_id for r in rows()}
    assert len(sink.messages) == 13


def test_no_message_body_or_address_goes_to_the_log(app, smtp_server, caplog):
    _sink, controller = smtp_server
    queue(2)
    transport = Transports(email=SMTPTransport(smtp_url(controller)))
    with caplog.at_level(logging.DEBUG):
        outbox_service.drain(transport)
    transport.close()
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("portal"))
    assert "outbox batch: sent=2" in ours
    assert "text 0" not in ours and "person0@example.com" not in ours


def test_work_without_smtp_url_says_where_messages_are(runner, app):
    app.config["SMTP_URL"] = None
    result = runner.invoke(args=["outbox", "work", "--once"])
    assert result.exit_code != 0
    assert "PORTAL_SMTP_URL is not set" in result.output


def test_outbox_rows_hold_no_plaintext(app):
    queue(1)
    raw = db.session.execute(
        select(OutboxMessage.recipient_sealed, OutboxMessage.body_sealed)
    ).one()
    assert b"person0@example.com" not in raw[0]
    assert b"text 0" not in raw[1]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(not pg_url(), reason="needs PORTAL_TEST_DATABASE_URL (PostgreSQL)")
def test_two_workers_deliver_2000_messages_each_exactly_once(app, database_url):
    class SlowSink(SMTPSink):
        async def handle_DATA(self, server, session, envelope):
            import asyncio

            await asyncio.sleep(0.001)  # slow enough that both workers are busy together
            return await super().handle_DATA(server, session, envelope)

    sink = SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        queue(2000)
        env = {**os.environ, **base_env(database_url, PORTAL_SMTP_URL=smtp_url(controller))}
        command = [
            os.path.join(os.path.dirname(sys.executable), "portal"),
            "outbox",
            "work",
            "--once",
        ]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
        ]
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        controller.stop()

    assert all(w.returncode == 0 for w in workers), outputs
    ids = sink.message_ids()
    assert len(ids) == 2000
    assert len(set(ids)) == 2000
    assert all(r.status == "sent" for r in rows())
    sent_by = [int(out.split("Sent ")[1].split(",")[0]) for out in outputs]
    assert sum(sent_by) == 2000
    assert min(sent_by) > 0, f"one worker did nothing: {sent_by}"


def test_non_ascii_text_arrives_intact(app, smtp_server):
    sink, controller = smtp_server
    outbox_service.enqueue_email(
        dedupe_key="es",
        recipient="ana@example.com",
        subject="Aviso de filtración de datos",
        text="Información — qué pasó",
        html="<p>Información — qué pasó</p>",
        locale="es",
    )
    db.session.commit()
    transport = Transports(email=SMTPTransport(smtp_url(controller)))
    outbox_service.drain(transport)
    transport.close()

    received = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    assert received["Subject"] == "Aviso de filtración de datos"
    assert received.get_body(("plain",)).get_content().strip() == "Información — qué pasó"
    assert all(byte < 128 for byte in sink.messages[0].content)  # 7-bit clean on the wire
