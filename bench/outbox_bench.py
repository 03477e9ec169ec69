"""Outbox benchmark: 1, 2 and 4 workers, each its own process, against a plain smtplib loop.

    python bench/outbox_bench.py [MESSAGES]      (default 20,000)

One PostgreSQL database of the bench's own (created and dropped on the server of
BENCH_DATABASE_URL, see bench/queue_bench.py) holds real notices, queued by `queue_notices` as
`portal notices send` does: each message is its template filled when it is sent. One aiosmtpd
sink runs in a process of its own. Before each worker run the floor runs: the very same
messages (their bytes made up front) sent over one connection by a bare smtplib loop; then the
queue is set back as it was and N `outbox.drain` processes, started and waiting, are let go at
once. Reported: messages/s of 1 worker against the floor (target >= 0.7), of 2 workers against
1 (target >= 1.6x), of 4, and the CPU a worker spends per message (and the sink's, and the
database's, which share the same two cores).
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.queue_bench import bench_backends, postgres_cpu  # noqa: E402
from bench.table import Row  # noqa: E402

SIZES = {"quick": 2_000, "full": 20_000}
WORKERS = (1, 2, 4)

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

RESET = """
UPDATE outbox_message SET status = 'queued', attempts = 0, next_attempt_at = now(),
    sent_at = NULL, last_error = '', body_sealed = kept.body_sealed, body_digest = NULL,
    body_purged_at = NULL
FROM bench_kept_body AS kept WHERE kept.id = outbox_message.id
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(url: str, port: int) -> None:
    """A worker process: ready, wait for the word, drain the outbox, report."""
    from sqlalchemy import text

    from bench.queue_bench import make_app
    from portal.extensions import db
    from portal.mail.smtp import SMTPTransport
    from portal.services import outbox

    app = make_app(url)
    with app.app_context():
        transport = outbox.Transports(email=SMTPTransport(f"smtp://127.0.0.1:{port}"))
        db.session.execute(text("SELECT 1"))  # connected before the clock starts
        db.session.commit()
        print("ready", flush=True)
        sys.stdin.readline()
        cpu = time.process_time()
        result = outbox.drain(transport)
        cpu = time.process_time() - cpu
        transport.close()
        db.session.commit()
        print(json.dumps({"sent": result.sent, "cpu": cpu}), flush=True)
        sys.stdin.readline()  # connected until the parent has read PostgreSQL's CPU


def run_workers(url: str, port: int, count: int, sink_pid: int) -> dict[str, float]:
    env = {**os.environ}
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    for process in processes:
        line = process.stdout.readline().strip()
        assert line == "ready", line
    pids = bench_backends()  # the workers' server processes (connected before "ready")
    sink_cpu, pg_cpu = cpu_seconds(sink_pid), postgres_cpu(pids)
    start = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = [json.loads(process.stdout.readline()) for process in processes]
    elapsed = time.perf_counter() - start
    pg_cpu = postgres_cpu(pids) - pg_cpu  # before the workers' server processes end with them
    for process in processes:
        process.stdin.write("bye\n")
        process.stdin.flush()
        process.wait(timeout=60)
    return {
        "seconds": elapsed,
        "sent": sum(r["sent"] for r in reports),
        "worker_cpu": sum(r["cpu"] for r in reports),
        "sink_cpu": cpu_seconds(sink_pid) - sink_cpu,
        "pg_cpu": pg_cpu,
    }


def floor(port: int, sender: str, prebuilt: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare smtplib loop to send the very same messages over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for recipient, message in prebuilt:
            conn.sendmail(sender, [recipient], message)
    return time.perf_counter() - start


def run(count: int, *, verbose: bool = False) -> list[dict]:
    from flask_migrate import upgrade
    from sqlalchemy import select, text

    from bench.queue_bench import make_app, make_customers, make_incident, scratch_database
    from portal import ROOT as PORTAL_ROOT
    from portal.config import new_data_key
    from portal.extensions import db
    from portal.models import OutboxMessage
    from portal.services import outbox
    from portal.services.notices import queue_notices

    os.environ["BENCH_DATA_KEY"] = new_data_key()  # the workers open what this process sealed
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout.readline().strip() == "ready"
    rounds = []
    try:
        with scratch_database("bench_outbox") as url:
            app = make_app(url)
            with app.app_context():
                upgrade(directory=str(PORTAL_ROOT / "migrations"))
                incident = make_incident()
                make_customers(incident.id, count)
                queue_notices(incident, actor="bench")
                db.session.execute(
                    text(
                        "CREATE TABLE bench_kept_body AS SELECT id, body_sealed FROM outbox_message"
                    )
                )
                db.session.commit()
                rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
                prebuilt = [(row.recipient, outbox.message_bytes(row)) for row in rows]
                db.session.expunge_all()
                sender = app.config["MAIL_FROM"]
                for workers in WORKERS:
                    floor_s = floor(port, sender, prebuilt)
                    db.session.execute(text(RESET))
                    db.session.execute(text("UPDATE notice SET sent_at = NULL"))
                    db.session.commit()
                    with db.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    ) as conn:
                        conn.exec_driver_sql("VACUUM ANALYZE outbox_message, notice")
                    figures = run_workers(url, port, workers, sink.pid)
                    assert figures["sent"] == count, figures
                    figures.update(workers=workers, floor=count / floor_s)
                    figures["rate"] = count / figures["seconds"]
                    rounds.append(figures)
                    if verbose:
                        print(
                            f"{workers} worker(s): {figures['rate']:,.0f} msg/s"
                            f" (floor {figures['floor']:,.0f}); CPU per message: worker"
                            f" {figures['worker_cpu'] / count * 1000:.2f} ms, sink"
                            f" {figures['sink_cpu'] / count * 1000:.2f} ms, PostgreSQL"
                            f" {figures['pg_cpu'] / count * 1000:.2f} ms",
                            flush=True,
                        )
                db.session.remove()
                db.engine.dispose()
    finally:
        sink.stdin.close()
        sink.wait(timeout=30)
    return rounds


def measure(size: str) -> list[Row]:
    count = SIZES[size]
    rounds = {r["workers"]: r for r in run(count)}
    one, two = rounds[1], rounds[2]
    rows = [
        Row(
            f"outbox, 1 worker, {count:,} notices (floor: smtplib loop)",
            one["rate"],
            "msg/s",
            floor=one["floor"],
            target="ratio >= 0.7",
            met=one["rate"] / one["floor"] >= 0.7,
        ),
        Row(
            "outbox, 2 workers against 1 (floor: 1 worker)",
            two["rate"],
            "msg/s",
            floor=one["rate"],
            target="ratio >= 1.6",
            met=two["rate"] / one["rate"] >= 1.6,
        ),
        Row(
            "outbox, 4 workers against 1 (floor: 1 worker)",
            rounds[4]["rate"],
            "msg/s",
            floor=one["rate"],
        ),
    ]
    for workers, figures in rounds.items():
        sink_ms = figures["sink_cpu"] / count * 1000
        pg_ms = figures["pg_cpu"] / count * 1000
        rows.append(
            Row(
                f"outbox, {workers} worker(s): worker CPU per message"
                f" (sink {sink_ms:.2f} ms, PostgreSQL {pg_ms:.2f} ms)",
                figures["worker_cpu"] / count * 1000,
                "ms",
            )
        )
    return rows


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else SIZES["full"]
    rounds = {r["workers"]: r for r in run(count, verbose=True)}
    one = rounds[1]
    print(f"1 worker / smtplib floor : {one['rate'] / one['floor']:.2f}  (target >= 0.7)")
    for workers in WORKERS[1:]:
        print(f"{workers} workers / 1 worker    : {rounds[workers]['rate'] / one['rate']:.2f}x")


if __name__ == "__main__":
    main()
