"""Outbox benchmark: the worker against a plain smtplib loop, both into one aiosmtpd sink.

    python bench/outbox_bench.py [MESSAGES]      (default 20,000)

The sink runs in its own process so that it does not share a core's interpreter lock with the
sender. The baseline sends the same messages (already decrypted, the very bytes the worker sends)
over one connection with smtplib and nothing else; the worker claims, decrypts, sends and
records each one. The ratio is
worker rate / baseline rate (target: at least 0.7).
"""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    from flask_migrate import upgrade

    from portal import create_app
    from portal.config import new_data_key
    from portal.extensions import db
    from portal.mail.smtp import SMTPTransport
    from portal.models import OutboxMessage
    from portal.services import outbox

    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout.readline().strip() == "ready"
    folder = tempfile.mkdtemp()
    app = create_app(
        {
            "PORTAL_ENV": "testing",
            "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "PORTAL_DATA_KEYS": new_data_key(),
            "PORTAL_BASE_URL": "https://portal.example.test",
            "PORTAL_DATABASE_URL": os.environ.get("BENCH_DATABASE_URL")
            or f"sqlite:///{folder}/bench.db",
            "PORTAL_MAIL_FROM": "notices@portal.example.test",
        }
    )
    try:
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            text = "Notice of Data Breach\n\n" + "A realistic paragraph of notice text. " * 60
            html = "<h1>Notice of Data Breach</h1>" + "<p>A realistic paragraph.</p>" * 60
            print(f"queueing {count:,} messages ...", flush=True)
            for i in range(count):
                outbox.enqueue_email(
                    dedupe_key=f"bench:{i}",
                    recipient=f"person{i}@example.com",
                    subject="Notice of Data Breach",
                    text=text,
                    html=html,
                )
                if i % 1000 == 999:
                    db.session.commit()
            outbox.after_bulk_queue()  # as `notices send` does after queueing a campaign
            db.session.commit()

            # Baseline: the very same messages, built up front, sent by a bare smtplib loop.
            rows = db.session.query(OutboxMessage).order_by(OutboxMessage.id).all()
            prebuilt = [(r.recipient, r.body) for r in rows]
            db.session.expunge_all()
            sender = app.config["MAIL_FROM"]
            start = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as conn:
                for recipient, message in prebuilt:
                    conn.sendmail(sender, [recipient], message)
            base_s = time.perf_counter() - start
            del prebuilt

            transport = outbox.Transports(email=SMTPTransport(f"smtp://127.0.0.1:{port}"))
            start = time.perf_counter()
            result = outbox.drain(transport)
            worker_s = time.perf_counter() - start
            transport.close()
            assert result.sent == count, result
    finally:
        sink.stdin.close()
        sink.wait(timeout=30)

    base_rate, worker_rate = count / base_s, count / worker_s
    print(f"plain smtplib loop : {base_rate:>8,.0f} messages/s ({base_s:.1f} s)")
    print(f"outbox worker      : {worker_rate:>8,.0f} messages/s ({worker_s:.1f} s)")
    print(
        f"ratio worker/plain : {worker_rate / base_rate:.2f}  (target >= 0.7: "
        f"{'met' if worker_rate / base_rate >= 0.7 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
