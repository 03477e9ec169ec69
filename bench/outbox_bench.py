"""Outbox benchmark: 1, 2 and 4 workers, each its own process, against a plain smtplib loop.

    python bench/outbox_bench.py [MESSAGES]      (default 20,000)

One PostgreSQL database of the bench's own (created and dropped on the server of
BENCH_DATABASE_URL, see bench/queue_bench.py) holds real notices, queued by `queue_notices` as
`portal notices send` does: each message is its template filled when it is sent. One SMTP sink
runs in a process of its own. Before each worker run the floor runs: the very same messages
(their bytes made up front) sent by as many bare smtplib loops as there are workers, each over
one connection, in processes of their own; then the queue is set back as it was and N
`outbox.drain` processes, started and waiting, are let go at once. Reported: messages/s of 1
worker against the floor (target >= 0.7), of 2 workers against 1 (target >= 1.6x, the issue's
figure) and against 2 loops, of 4, and the CPU a worker spends per message (and the sink's, and
the database's, which share the same two cores).

The sink stands for the mail provider, another machine in production: its CPU on our two cores is
the bench's, not the portal's. aiosmtpd spent 0.6-0.8 ms of CPU a message, as much as a worker,
so that two raw loops against it reached only ~1.6x one loop and two workers competed with the
sink for the cores. The default sink (SINK below) speaks just the SMTP a client needs to hand a
message over, in a plain asyncio protocol; BENCH_SINK=aiosmtpd runs the old one to compare.
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

AIOSMTPD_SINK = """
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

# The lean sink: greeting, EHLO/HELO (offering PIPELINING, as the relays we send to do), MAIL,
# RCPT, RSET, NOOP answered 250, DATA read to its closing "<CRLF>.<CRLF>" and answered 250, QUIT
# answered 221; the message is dropped. Replies to pipelined commands go back in one write. Its
# CPU is a fraction of aiosmtpd's (bench figures). The floor's smtplib loops do not pipeline.
SINK = """
import asyncio, sys

END = b"\\r\\n.\\r\\n"

class Session(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer, self.data = transport, bytearray(), False
        transport.write(b"220 sink ESMTP\\r\\n")

    def data_received(self, chunk):
        start = max(0, len(self.buffer) - 4)
        self.buffer += chunk
        replies = []
        while True:
            if self.data:
                end = self.buffer.find(END, start)
                if end < 0:
                    break
                del self.buffer[: end + 5]
                self.data, start = False, 0
                replies.append(b"250 OK\\r\\n")
                continue
            end = self.buffer.find(b"\\r\\n")
            if end < 0:
                break
            verb = bytes(self.buffer[:4]).upper()
            del self.buffer[: end + 2]
            if verb in (b"EHLO", b"HELO"):
                replies.append(
                    b"250-sink\\r\\n250-PIPELINING\\r\\n250-8BITMIME\\r\\n250 SMTPUTF8\\r\\n"
                )
            elif verb == b"DATA":
                # The body's end may be its first line (an empty message): look from its start.
                self.data, start = True, 0
                self.buffer[0:0] = b"\\r\\n"
                replies.append(b"354 go ahead\\r\\n")
            elif verb == b"QUIT":
                self.transport.write(b"".join(replies) + b"221 bye\\r\\n")
                self.transport.close()
                return
            else:
                replies.append(b"250 OK\\r\\n")
        if replies:
            self.transport.write(b"".join(replies))

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Session, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()

asyncio.run(main())
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


def _loop(port: int, sender: str, share: list[tuple[str, bytes]], done) -> None:
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for recipient, message in share:
            conn.sendmail(sender, [recipient], message)
    done.put(None)


def floor(port: int, sender: str, prebuilt: list[tuple[str, bytes]], loops: int = 1) -> float:
    """Seconds for `loops` bare smtplib loops, each a process with its own connection, to send
    the very same messages between them (the floor of as many workers)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    done = context.Queue()
    processes = [
        context.Process(target=_loop, args=(port, sender, prebuilt[n::loops], done))
        for n in range(loops)
    ]
    start = time.perf_counter()
    for process in processes:
        process.start()
    for _ in processes:
        done.get(timeout=600)
    elapsed = time.perf_counter() - start
    for process in processes:
        process.join()
    return elapsed


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
    program = AIOSMTPD_SINK if os.environ.get("BENCH_SINK") == "aiosmtpd" else SINK
    sink = subprocess.Popen(
        [sys.executable, "-c", program, str(port)],
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
                    floor_s = floor(port, sender, prebuilt, workers)
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
                            f" (floor, {workers} smtplib loop(s): {figures['floor']:,.0f});"
                            f" CPU per message: worker"
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
            "outbox, 2 workers (floor: 2 smtplib loops in parallel)",
            two["rate"],
            "msg/s",
            floor=two["floor"],
        ),
        Row(
            "outbox, 4 workers against 1 (floor: 1 worker)",
            rounds[4]["rate"],
            "msg/s",
            floor=one["rate"],
        ),
        Row(
            "outbox, 4 workers (floor: 4 smtplib loops in parallel)",
            rounds[4]["rate"],
            "msg/s",
            floor=rounds[4]["floor"],
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
        figures = rounds[workers]
        print(
            f"{workers} workers / 1 worker    : {figures['rate'] / one['rate']:.2f}x"
            f"  ({workers} loops / 1 loop: {figures['floor'] / one['floor']:.2f}x;"
            f" {workers} workers / {workers} loops: {figures['rate'] / figures['floor']:.2f})"
        )


if __name__ == "__main__":
    main()
