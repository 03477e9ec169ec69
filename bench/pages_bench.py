"""Page benchmark: the portal's busiest pages under gunicorn, beside Flask's hello world.

    python bench/pages_bench.py [--quick | --full]

Both are served by the same gunicorn with the portal's gunicorn.conf.py (2 sync workers, this
machine's 2 cores) and loaded by wrk
(50 connections; a small C program, so that the load does not take the cores it measures), in
interleaved rounds: hello world, then each page, then again. Each page reports requests per
second as a ratio of hello world's in the same round (target >= 0.3, goal 0.5), the app's CPU
per request (the gunicorn workers' user + system time over the requests they answered), p99
latency at 50 connections, and every answer that was not 2xx or 3xx.

The database is PostgreSQL (a database of the benchmark's own, created and dropped on the server
named by BENCH_DATABASE_URL) and Redis (database 2, emptied first), in production settings behind
a TLS proxy (X-Forwarded-Proto), with the demo incident's customers. The signed-in pages are read
with one customer's session cookie; requests come from many addresses, as through a proxy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import admin, bin_path, database_url, free_port  # noqa: E402
from bench.table import Row  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
DATABASE = "bench_pages"
CONNECTIONS = 50
WORKERS = 2
USER_AGENT = "portal-bench (wrk)"
ORIGIN = "https://portal.example.test"

# page name -> (target CPU ms per request)
CPU_TARGET_MS = {"landing": 1.0, "dashboard": 2.0, "plan": 2.0}


@dataclass
class Load:
    requests: int
    seconds: float
    p99_ms: float
    bad: int  # answers that were not 2xx/3xx, plus socket errors
    cpu_s: float  # the gunicorn workers' CPU over the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _environment(folder: Path) -> dict[str, str]:
    from portal.config import new_data_key

    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's portal, whatever the venv points at
        "PORTAL_ENV": "production",
        "PORTAL_BASE_URL": ORIGIN,
        "PORTAL_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "PORTAL_DATA_KEYS": new_data_key(),
        "PORTAL_AUDIT_KEYS": new_data_key(),
        "PORTAL_DATABASE_URL": database_url(DATABASE),
        "PORTAL_INSTANCE_PATH": str(folder),
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_MAIL_FROM": "notices@portal.example.test",
        "PORTAL_STAFF_SAME_HOST": "1",
        "PORTAL_PROXY_HOPS": "1",  # as behind the TLS proxy of docs/deploy.md
    }


SETUP = """
import sys
from sqlalchemy import select
from portal import clock, create_app
from portal.extensions import db
from portal.models import Customer, Incident, Notice
from portal.services import tokens
from portal.services.sessions import open_session
from portal.unit_of_work import unit

app = create_app()
with app.app_context(), unit():
    customer = db.session.scalars(select(Customer).order_by(Customer.id)).first()
    notice = db.session.scalars(select(Notice).where(Notice.customer_id == customer.id)).first()
    incident = db.session.get(Incident, notice.incident_id)
    token = open_session(customer, verified_at=clock.now(), user_agent=sys.argv[1])
    link = tokens.link(tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce)
    slug = incident.slug
value = app.session_interface.get_signing_serializer(app).dumps({"sid": token})
print(f"{app.config['SESSION_COOKIE_NAME']}={value}")
print(link.removeprefix(app.config["BASE_URL"]))
print(slug)
"""


def _setup(env: dict[str, str]) -> tuple[str, str, str]:
    """A database with the demo incident and its customers; a session cookie, a link, a slug."""
    admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin(f"CREATE DATABASE {DATABASE}")
    for command in (["db", "upgrade"], ["demo"]):
        subprocess.run([bin_path("portal"), *command], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [sys.executable, "-c", SETUP, USER_AGENT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split("\n")
    return out[0], out[1], out[2]


class Server:
    """gunicorn serving an app; the CPU its workers spent, read from /proc."""

    def __init__(self, app: str, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        # Kept open for the server's life (its stderr); read only when it fails to start.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            # Both with the portal's own gunicorn.conf.py (its access log, preload and the rest),
            # so that the floor is served exactly as the portal is.
            [bin_path("gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), app],
            env={
                **env,
                "PORTAL_WEB_BIND": f"127.0.0.1:{self.port}",
                "PORTAL_WEB_WORKERS": str(WORKERS),
                "PORTAL_WEB_ERROR_LOG": "-",
            },
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None:
                    self.log.seek(0)
                    raise SystemExit(self.log.read().decode()) from None
                time.sleep(0.2)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.workers():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


_LATENCY = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def _wrk(server: Server, path: str, seconds: int, headers: dict[str, str]) -> Load:
    args = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    args += ["-s", str(ROOT / "bench" / "spread.lua")]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    before = server.cpu_seconds()
    out = subprocess.run(
        [*args, f"http://127.0.0.1:{server.port}{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu = server.cpu_seconds() - before
    count, span, unit = _REQUESTS.search(out).groups()
    span_s = float(span) * {"ms": 0.001, "s": 1, "m": 60}[unit]
    value, unit = _LATENCY.search(out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    bad = int(_NON_2XX.search(out).group(1)) if _NON_2XX.search(out) else 0
    if match := _SOCKET.search(out):
        bad += sum(int(n) for n in match.groups())
    return Load(int(count), span_s, p99, bad, cpu)


def measure(size: str) -> list[Row]:
    if shutil.which("wrk") is None:
        raise SystemExit("pages: wrk is missing (make bench installs it: make bench-tools)")
    seconds, rounds = (5, 2) if size == "quick" else (10, 3)
    with tempfile.TemporaryDirectory() as folder:
        env = _environment(Path(folder))
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
        cookie, link, slug = _setup(env)
        pages = {
            "landing": ("/", {}),
            "public incident page": (f"/incidents/{slug}", {}),
            "link page": (link, {}),
            "dashboard": ("/me", {"Cookie": cookie}),
            "plan": ("/me/plan", {"Cookie": cookie}),
        }
        common = {"X-Forwarded-Proto": "https", "Host": "portal.example.test"}
        common["User-Agent"] = USER_AGENT
        hello = Server("hello:app", env, ROOT / "bench")
        portal = Server("wsgi:app", env, ROOT)
        results: dict[str, list[Load]] = {"hello": [], **{name: [] for name in pages}}
        try:
            for path, headers in pages.values():  # warm each worker's caches and connections
                _wrk(portal, path, 2, {**common, **headers})
            _wrk(hello, "/", 2, common)
            for _ in range(rounds):
                results["hello"].append(_wrk(hello, "/", seconds, common))
                for name, (path, headers) in pages.items():
                    results[name].append(_wrk(portal, path, seconds, {**common, **headers}))
        finally:
            hello.stop()
            portal.stop()
            admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    # A round in which wrk saw no answer at all (the machine stalled) tells nothing of the
    # page's cost; it is left out of the medians and counted among the bad answers below.
    stalled = {
        name: sum(1 for load in loads if not load.requests) for name, loads in results.items()
    }
    results = {name: [load for load in loads if load.requests] for name, loads in results.items()}
    floor = statistics.median(load.rate for load in results["hello"])
    floor_cpu = statistics.median(load.cpu_s / load.requests * 1000 for load in results["hello"])
    rows = [
        Row(
            f"hello world, {CONNECTIONS} connections",
            floor,
            "req/s",
            target=f"the floor ({floor_cpu:.2f} ms CPU/request)",
        )
    ]
    bad_total = 0
    for name in pages:
        loads = results[name]
        rate = statistics.median(load.rate for load in loads)
        cpu_ms = statistics.median(load.cpu_s / load.requests * 1000 for load in loads)
        p99 = statistics.median(load.p99_ms for load in loads)
        bad_total += sum(load.bad for load in loads) + stalled[name]
        rows.append(
            Row(f"{name}: requests", rate, "req/s", floor, "ratio >= 0.3", rate / floor >= 0.3)
        )
        target = CPU_TARGET_MS.get(name)
        rows.append(
            Row(
                f"{name}: app CPU per request",
                cpu_ms,
                "ms",
                floor_cpu,
                f"<= {target:g} ms" if target else "",
                cpu_ms <= target if target else None,
            )
        )
        rows.append(
            Row(f"{name}: p99, {CONNECTIONS} connections", p99, "ms", None, "< 100 ms", p99 < 100)
        )
    rows.append(Row("pages: answers not 2xx/3xx", bad_total, "", None, "0", bad_total == 0))
    return rows


def main() -> None:
    from bench.table import render

    size = "full" if "--full" in sys.argv[1:] else "quick"
    print(render(measure(size)))


if __name__ == "__main__":
    main()
