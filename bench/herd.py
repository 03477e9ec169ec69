"""Notice-day herd: people walk link -> code -> dashboard -> plan against the portal as deployed.

    python bench/herd.py [PEOPLE] [--at-once N] [--time-limit SECONDS]   (default 5,000 people)

What runs, each in its own process, on this machine: PostgreSQL and Redis (as for the tests),
gunicorn with 2 sync workers in production settings behind a TLS proxy (PORTAL_PROXY_HOPS=1 with
X-Forwarded-Proto and X-Forwarded-For, as the proxy of docs/deploy.md sends them), one
`portal outbox work` delivering over SMTP to an aiosmtpd sink, and this script's threads, the
people. First the portal's own commands set the day up: `portal incident create`,
`portal customers import` of PEOPLE generated customers (email only, so every code goes by
email), `portal notices send`; the worker delivers the notices to the sink, and each person's
link is read from their notice there, as they would read it.

Then PEOPLE people, a fixed number at a time (50), each walk the way in as a browser does:

    link page   GET  /a/<token>      the page the notice's link opens (shows a button)
    link button POST /a/<token>      with the page's CSRF token: a code is queued -> /verify
    code page   GET  /verify         the code form (its CSRF token)
                                     ... wait for the code to arrive in the sink ...
    code        POST /verify         the code from the email -> /me: one verification
    dashboard   GET  /me
    plan        GET  /me/plan

Each person comes from an address of their own in 198.18.0.0/15 (the range set aside for
benchmarks, RFC 2544), reported by the proxy in X-Forwarded-For: a herd from one address would
be one person hammering, which the per-network rate limits are there to stop (and they would,
with 429s). The per-person limits still apply to each person.

Reported: verifications completed per second over the herd's run (no floor: there is no simpler
program that does this whole path; the page benchmark holds the pages against hello world),
p50 and p99 of each step (target p99 < 1 s), the code delivery delay (from the button's POST
to the code's arrival in the sink), every answer that is not 2xx/3xx counted with its status,
and the CPU each process spent, this script's own included (it must stay small: it shares the
two cores with what it measures). A person stops at their first error, as a person facing an
error page would; people not started within the time limit are counted, not hidden.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_URL, admin, bin_path, database_url, free_port  # noqa: E402
from bench.table import Row  # noqa: E402

# A database and a Redis database of the herd's own: created (or emptied) first, dropped after.
DATABASE = os.environ.get("BENCH_HERD_DATABASE", "bench_herd")
REDIS_URL = os.environ.get("BENCH_HERD_REDIS_URL", "redis://127.0.0.1:6379/3")
ORIGIN = "https://portal.example.test"
HOST = urlsplit(ORIGIN).hostname
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) portal-bench-herd"
WORKERS = 2
AT_ONCE = 50
SLUG = "herd"
WARM_SLUG = "herd-warm-up"
# Each person's own address: the RFC 2544 benchmarking range has 131,072 of them.
ADDRESSES = ipaddress.IPv4Network("198.18.0.0/15")
# The pages say a code "may take a minute to arrive": a person waits two before giving up.
CODE_PATIENCE_S = 120.0
REQUEST_TIMEOUT_S = 60.0
NOTICE_PATIENCE_S = 1800.0  # --while-sending: how long a person waits for their notice
STEPS = ("link page", "link button", "code page", "code", "dashboard", "plan")
PAGE_P99_TARGET_MS = 1000.0
# A few people walk first, unrecorded: each gunicorn worker compiles its templates and opens its
# connections on its first requests, which is no part of notice day's cost.
WARM_UP = 2 * WORKERS
APP = "app (gunicorn, 2 workers)"
CLIENT = "herd client (this script)"
DATABASE_CPU = "PostgreSQL (the herd database's backends)"
APP_WAITING = "app workers waiting for a core (not CPU: run queue)"
SIZES = {"quick": (500, 300.0), "full": (5_000, 1800.0)}  # people, time limit (s)

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# --- the processes -----------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _runqueue_seconds(pid: int) -> float:
    """Time so far that a process was ready to run but waited for a core others held."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _backends_cpu() -> float:
    """CPU so far of the PostgreSQL backends serving the herd's database (the server is local).

    The app's and the worker's pooled connections live through the herd; a backend that ended
    during it would take its count with it (none does unless a connection is dropped)."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (DATABASE,),
        ).fetchall()
    return sum(_cpu_seconds(pid) for (pid,) in pids)


def _environment(folder: Path, smtp_port: int) -> dict[str, str]:
    """Production settings, with secrets that exist only for this run."""
    import secrets

    from portal.config import new_data_key

    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's portal, whatever the venv points at
        "PORTAL_ENV": "production",
        "PORTAL_BASE_URL": ORIGIN,
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_DATA_KEYS": new_data_key(),
        "PORTAL_AUDIT_KEYS": new_data_key(),
        "PORTAL_DATABASE_URL": database_url(DATABASE),
        "PORTAL_INSTANCE_PATH": str(folder / "instance"),
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "PORTAL_MAIL_FROM": "notices@portal.example.test",
        "PORTAL_STAFF_SAME_HOST": "1",
        "PORTAL_PROXY_HOPS": "1",  # one TLS proxy in front, as in docs/deploy.md
    }


def _portal(env: dict[str, str], *args: str) -> float:
    """Run a `portal` command; return the seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(
        [bin_path("portal"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"herd: portal {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def email_of(n: int) -> str:
    return f"person{n}@herd.example.test"


def _write_customers(path: Path, people: range) -> None:
    """These people (numbers) as affected customers, each with an email address and no phone:
    every code goes by email."""
    classes = ["email_address", "payment_card:4242", "ssn:6789", "date_of_birth", "full_name"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["external_id", "full_name", "email", "phone", "locale", "region", "data_classes"]
        )
        for n in people:
            writer.writerow(
                [
                    f"H-{n:07d}",
                    f"Person {n} Example",
                    email_of(n),
                    "",
                    "es" if n % 7 == 0 else "en",  # some read Spanish
                    "US-CA",
                    ";".join(classes[n % 3 : n % 3 + 3]),
                ]
            )


class Mailbox:
    """What the sink received, by kind ("link", "code") and recipient, for whoever waits."""

    def __init__(self, stream) -> None:
        self.lock = threading.Lock()
        self.received: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.waiting: dict[tuple[str, str], threading.Event] = {}
        self.other = 0
        self.reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            message = json.loads(line)
            kind = "link" if message["link"] else "code" if message["code"] else None
            with self.lock:
                if kind is None:
                    self.other += 1
                    continue
                key = (kind, message["to"])
                self.received.setdefault(key, []).append((message["t"], message[kind]))
                if key in self.waiting:
                    self.waiting[key].set()

    @property
    def links(self) -> dict[str, str]:
        """Each recipient's first access link (its path)."""
        with self.lock:
            return {to: got[0][1] for (kind, to), got in self.received.items() if kind == "link"}

    def link_count(self) -> int:
        with self.lock:
            return sum(1 for kind, _to in self.received if kind == "link")

    def first(self, kind: str, address: str, timeout: float) -> tuple[float, str] | None:
        """The first link or code that reached address: (when it arrived, what), or None."""
        key = (kind, address)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.received.get(key):
                    self.waiting.pop(key, None)
                    return self.received[key][0]
                event = self.waiting.setdefault(key, threading.Event())
                event.clear()
            left = deadline - time.monotonic()
            if left <= 0 or not event.wait(left):
                with self.lock:
                    self.waiting.pop(key, None)
                    found = self.received.get(key)
                return found[0] if found else None

    def code_for(self, address: str, timeout: float) -> tuple[float, str] | None:
        return self.first("code", address, timeout)


# --- one person --------------------------------------------------------------------------------


class Failed(Exception):
    """The person met an error page (or no code): they stop here, as a person would."""

    def __init__(self, step: str, what: str) -> None:
        super().__init__(f"{step}: {what}")
        self.step, self.what = step, what


class Browser:
    """One person's browser: their cookies, their address (as the proxy reports it)."""

    def __init__(self, port: int, address: str) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.referer: str | None = None
        self.headers = {
            "Host": HOST,
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml",
            "Accept-Language": "en-US,en;q=0.8",
            # What the TLS proxy adds: the scheme the person used, and who they are.
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": address,
        }

    def request(self, method: str, path: str, form: dict | None = None):
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = ORIGIN
            headers["Sec-Fetch-Site"] = "same-origin"
        if self.referer:  # a browser sends the page it came from (Flask-WTF checks it on HTTPS)
            headers["Referer"] = self.referer
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        for value in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = value.partition("=")
            cookie_value, *attributes = rest.split(";")
            gone = any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attributes)
            if gone or "expires=thu, 01 jan 1970" in value.lower():
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = cookie_value.strip()
        return response.status, response.headers, text


@dataclass
class Tally:
    """Everything the people saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    delays: list[float] = field(default_factory=list)  # code delivery, seconds
    errors: Counter = field(default_factory=Counter)  # (step, what) -> count
    started: int = 0
    verified: int = 0
    finished: int = 0
    last_verified_at: float = 0.0


def _step(tally: Tally, browser: Browser, step: str, method: str, path: str, form=None):
    began = time.perf_counter()
    try:
        status, headers, text = browser.request(method, path, form)
    except (OSError, http.client.HTTPException) as exc:
        raise Failed(step, f"no answer ({type(exc).__name__})") from None
    took = time.perf_counter() - began
    if not 200 <= status < 400:
        raise Failed(step, str(status))
    with tally.lock:
        tally.timings[step].append(took)
    return status, headers, text


def _csrf(step: str, text: str) -> str:
    match = _CSRF.search(text)
    if not match:
        raise Failed(step, "page without a CSRF token")
    return match.group(1)


def _expect_redirect(step: str, status: int, headers, to: str) -> None:
    location = urlsplit(headers.get("Location", "")).path
    if status not in (302, 303) or location != to:
        raise Failed(step, f"{status} to {location or 'nowhere'}, not {to}")


def walk(tally: Tally, mailbox: Mailbox, port: int, n: int, link: str | None) -> None:
    """One person's way in, as a browser walks it; raise Failed at the first error.

    Without a link, the person first waits for their notice to reach the sink (notices are
    still being sent), and clicks as soon as it does."""
    address = email_of(n)
    if link is None:
        arrival = mailbox.first("link", address, NOTICE_PATIENCE_S)
        if arrival is None:
            raise Failed("link page", f"no notice in the sink within {NOTICE_PATIENCE_S:.0f} s")
        link = arrival[1]
    browser = Browser(port, str(ADDRESSES[n + 1]))
    _status, _headers, text = _step(tally, browser, "link page", "GET", link)
    browser.referer = ORIGIN + link
    token = _csrf("link page", text)
    requested = time.time()
    status, headers, _text = _step(
        tally, browser, "link button", "POST", link, {"csrf_token": token}
    )
    _expect_redirect("link button", status, headers, "/verify")
    _status, _headers, text = _step(tally, browser, "code page", "GET", "/verify")
    browser.referer = ORIGIN + "/verify"
    token = _csrf("code page", text)
    arrival = mailbox.code_for(address, CODE_PATIENCE_S)
    if arrival is None:
        raise Failed("code", f"no code in the sink within {CODE_PATIENCE_S:.0f} s")
    arrived_at, code = arrival
    status, headers, _text = _step(
        tally, browser, "code", "POST", "/verify", {"csrf_token": token, "code": code}
    )
    _expect_redirect("code", status, headers, "/me")
    with tally.lock:
        tally.delays.append(max(0.0, arrived_at - requested))
        tally.verified += 1
        tally.last_verified_at = time.perf_counter()
    browser.referer = ORIGIN + "/verify"
    _step(tally, browser, "dashboard", "GET", "/me")
    browser.referer = ORIGIN + "/me"
    _step(tally, browser, "plan", "GET", "/me/plan")
    with tally.lock:
        tally.finished += 1


# --- the herd ----------------------------------------------------------------------------------


@dataclass
class Result:
    people: int
    at_once: int
    time_limit: float
    seconds: float  # first request to the last person's last answer
    tally: Tally
    cpu: dict[str, float]  # process -> CPU seconds during the herd
    setup: dict[str, float]  # setup step -> seconds
    load: float  # the machine's 1-minute load average as the herd began (others' work too)
    while_sending: bool = False  # people clicked as their notice arrived, the campaign going on

    @property
    def verifications_per_s(self) -> float:
        return self.tally.verified / self.seconds if self.seconds else 0.0

    @property
    def not_started(self) -> int:
        return self.people - self.tally.started


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"herd: a server did not start:\n{log.read_text()}") from None
            time.sleep(0.2)
    raise SystemExit(f"herd: nothing listens on port {port} after {seconds:.0f} s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _incident(env: dict[str, str], folder: Path, slug: str, people: range) -> float:
    """Create an incident and import these people as affected by it; return the import's time."""
    _portal(
        env,
        *("incident", "create", "--slug", slug, "--title", "Herd Corp data breach"),
        *("--discovered", date.today().isoformat()),
        *("--what-happened", "Someone copied part of our customer database."),
        *("--what-we-are-doing", "We closed the hole and called the police."),
        *("--contact-phone", "+1 800 555 0100", "--contact-hours", "9-5 weekdays"),
    )
    customers = folder / f"{slug}.csv"
    _write_customers(customers, people)
    took = _portal(env, "customers", "import", "--incident", slug, str(customers))
    _approve_campaign(env, slug)
    return took


# Legal approves the campaign as it stands, through the real service, as the console's four-eyes
# gate asks before `portal notices send` queues anything (two members: a drafter and legal).
APPROVE = """
import sys
from portal import create_app
from portal.services import approvals, incidents, notice_preview, staff
from portal.unit_of_work import unit

def member(address, role):
    found = staff.by_email(address)
    if found is None:
        staff.invite(address, role, actor="bench")
        found = staff.by_email(address)
    return found

with create_app().app_context():
    with unit():
        incident = incidents.get_by_slug(sys.argv[1])
        content = notice_preview.pinned(incident)
        asked = approvals.submit(
            incident, "campaign", incident.slug, content,
            drafter=member("drafter@bench.example", "admin"),
        )
        approvals.approve(asked, approver=member("legal@bench.example", "legal"))
"""


def _approve_campaign(env: dict[str, str], slug: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", APPROVE, slug], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"herd: approving the campaign of {slug} failed:\n{done.stderr}")


def _wait_for_links(mailbox: Mailbox, people: range, worker: subprocess.Popen, log: Path) -> None:
    """Until each of these people's notices has reached the sink."""
    deadline = time.monotonic() + max(120.0, len(people) / 10)
    while True:
        links = mailbox.links
        missing = sum(1 for n in people if email_of(n) not in links)
        if not missing:
            return
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                f"herd: {missing:,} of {len(people):,} notices did not reach the sink:\n"
                + log.read_text()[-3000:]
            )
        time.sleep(0.2)


def run(
    people: int, at_once: int = AT_ONCE, time_limit: float = 1800.0, while_sending: bool = False
) -> Result:
    """Set the day up, let the herd walk, tear everything down; return what was seen."""
    import redis

    most = ADDRESSES.num_addresses - 2 - WARM_UP
    if people > most:
        raise SystemExit(f"herd: at most {most:,} people (one address each)")
    setup: dict[str, float] = {}
    sink = server = worker = None
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        smtp_port, web_port = free_port(), free_port()
        env = _environment(folder, smtp_port)
        redis.Redis.from_url(REDIS_URL).flushdb()  # no rate-limit counts from an earlier run
        admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin(f"CREATE DATABASE {DATABASE}")
        try:
            sink = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "herd_sink.py"), str(smtp_port), ORIGIN],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            if sink.stdout.readline().strip() != "ready":
                raise SystemExit("herd: the SMTP sink did not start")
            mailbox = Mailbox(sink.stdout)

            setup["migrate"] = _portal(env, "db", "upgrade")
            worker_log, server_log = folder / "worker.log", folder / "gunicorn.log"
            with worker_log.open("w") as log:
                worker = subprocess.Popen(
                    [bin_path("portal"), "outbox", "work"],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            with server_log.open("w") as log:
                server = subprocess.Popen(
                    [
                        bin_path("gunicorn"),
                        "wsgi:app",
                        *("--bind", f"127.0.0.1:{web_port}", "--workers", str(WORKERS)),
                        *("--no-control-socket", "--log-level", "warning"),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            _wait_for_port(web_port, server, server_log)

            # The warm-up people are affected by an incident of their own, so that the herd's
            # notices can still be unsent when the herd starts (--while-sending).
            warm_people = range(people, people + WARM_UP)
            _incident(env, folder, WARM_SLUG, warm_people)
            _portal(env, "notices", "send", "--incident", WARM_SLUG)
            _wait_for_links(mailbox, warm_people, worker, worker_log)
            warm = herd(warm_people, WORKERS, 300, mailbox.links, mailbox, web_port)
            if warm.tally.finished != WARM_UP:
                raise SystemExit(f"herd: the warm-up walk failed: {dict(warm.tally.errors)}")

            setup["customers import"] = _incident(env, folder, SLUG, range(people))
            links = None
            if while_sending:
                # Everyone clicks as soon as their notice arrives, while the rest are still
                # being queued and delivered: codes share the outbox with the campaign.
                sending = subprocess.Popen(
                    [bin_path("portal"), "notices", "send", "--incident", SLUG],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            else:
                started = time.perf_counter()
                setup["notices send"] = _portal(env, "notices", "send", "--incident", SLUG)
                _wait_for_links(mailbox, range(people), worker, worker_log)
                setup["notices delivered"] = time.perf_counter() - started
                links = mailbox.links

            workers = set(_children(server.pid))
            processes = {
                APP: lambda: sum(_cpu_seconds(pid) for pid in [server.pid, *_children(server.pid)]),
                "outbox worker": lambda: _cpu_seconds(worker.pid),
                "SMTP sink": lambda: _cpu_seconds(sink.pid),
                DATABASE_CPU: _backends_cpu,
                APP_WAITING: lambda: sum(
                    _runqueue_seconds(pid) for pid in [server.pid, *_children(server.pid)]
                ),
            }
            result = herd(range(people), at_once, time_limit, links, mailbox, web_port, processes)
            result.while_sending = while_sending
            if while_sending and sending.wait() != 0:
                result.tally.errors[("notices send", f"exit {sending.returncode}")] += 1
            if set(_children(server.pid)) != workers:
                # A worker gunicorn killed (its timeout) took its CPU count with it: say so.
                result.tally.errors[("app", "a gunicorn worker was replaced")] += 1
            result.setup.update(setup)
            return result
        finally:
            _stop(server)
            _stop(worker)
            if sink is not None:
                sink.stdin.close()
                _stop(sink)
            admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def herd(
    people: range,
    at_once: int,
    time_limit: float,
    links: dict[str, str] | None,
    mailbox: Mailbox,
    port: int,
    processes: dict[str, Callable[[], float]] | None = None,
) -> Result:
    """Walk these people (numbers), AT_ONCE at a time; nobody new starts after the time limit.

    `links` maps each person's address to their link's path (None: each waits for their notice
    to reach the sink, then clicks at once); `processes` names CPU readers
    (seconds so far) of the processes to account for; this one's own is always counted."""
    tally = Tally()
    queue = iter(people)
    take = threading.Lock()
    stop_starting = time.monotonic() + time_limit

    def one_after_another() -> None:
        while True:
            with take:
                n = next(queue, None) if time.monotonic() < stop_starting else None
            if n is None:
                return
            with tally.lock:
                tally.started += 1
            try:
                link = None if links is None else links.get(email_of(n))
                if links is not None and link is None:
                    raise Failed("link page", "no notice reached the sink")
                walk(tally, mailbox, port, n, link)
            except Failed as failure:
                with tally.lock:
                    tally.errors[(failure.step, failure.what)] += 1
            except Exception as exc:  # the herd's own fault is still not a success
                with tally.lock:
                    tally.errors[("herd", type(exc).__name__)] += 1

    processes = {**(processes or {}), CLIENT: time.process_time}
    before = {name: read() for name, read in processes.items()}
    load = os.getloadavg()[0]
    began = time.perf_counter()
    threads = [threading.Thread(target=one_after_another, daemon=True) for _ in range(at_once)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    cpu = {name: read() - before[name] for name, read in processes.items()}
    return Result(len(people), at_once, time_limit, seconds, tally, cpu, {}, load)


# --- the table ---------------------------------------------------------------------------------


def rows(result: Result) -> list[Row]:
    tally = result.tally
    errors = sum(tally.errors.values())
    rows_ = [
        Row(
            f"herd: verifications completed, {result.people:,} people, {result.at_once} at a "
            + ("time, clicking while the notices go out" if result.while_sending else "time")
            + " (no floor: nothing simpler walks this path)",
            result.verifications_per_s,
            "/s",
        ),
        Row(
            f"herd: people through the whole path in the time limit ({result.time_limit:.0f} s)",
            tally.finished,
            "",
            None,
            f"all {result.people:,}",
            tally.finished == result.people,
        ),
    ]
    for step in STEPS:
        timings = [t * 1000 for t in tally.timings[step]]
        rows_.append(Row(f"herd: {step}, p50", _percentile(timings, 0.5), "ms"))
        p99 = _percentile(timings, 0.99)
        rows_.append(
            Row(
                f"herd: {step}, p99",
                p99,
                "ms",
                None,
                f"< {PAGE_P99_TARGET_MS:,.0f} ms",
                p99 < PAGE_P99_TARGET_MS,
            )
        )
    rows_.append(Row("herd: code delivery delay, p50", _percentile(tally.delays, 0.5), "s"))
    rows_.append(Row("herd: code delivery delay, p99", _percentile(tally.delays, 0.99), "s"))
    what = "; ".join(f"{s} {w} x{c}" for (s, w), c in tally.errors.most_common(4))
    rows_.append(Row(f"herd: errors ({what or 'none'})", errors, "", None, "0", errors == 0))
    if tally.verified and APP in result.cpu:
        app_ms = result.cpu[APP] / tally.verified * 1000
        rows_.append(Row("herd: app CPU per verified person (both workers)", app_ms, "ms"))
        # What bounds sync workers: a worker waiting (on the database, on Redis, or for a core
        # the machine's other work holds) serves no one meanwhile.
        busy = result.cpu[APP] / (WORKERS * result.seconds) * 100
        rows_.append(Row("herd: app workers on a CPU (share of their time)", busy, "%"))
        if APP_WAITING in result.cpu:
            waiting = result.cpu[APP_WAITING] / (WORKERS * result.seconds) * 100
            rows_.append(
                Row("herd: app workers ready but waiting for a core (share)", waiting, "%")
            )
    if tally.verified and DATABASE_CPU in result.cpu:
        db_ms = result.cpu[DATABASE_CPU] / tally.verified * 1000
        rows_.append(Row("herd: PostgreSQL CPU per verified person", db_ms, "ms"))
    client = result.cpu[CLIENT] / result.seconds * 100
    rows_.append(Row("herd: the herd client's own CPU (of one core)", client, "%"))
    # No floor to divide by: the busier the machine was with other work, the slower the herd.
    rows_.append(
        Row(
            f"herd: machine load as it began (1-min average, {os.cpu_count()} cores)",
            result.load,
            "",
        )
    )
    return rows_


def measure(size: str) -> list[Row]:
    people, time_limit = SIZES[size]
    return rows(run(people, AT_ONCE, time_limit))


def main() -> None:
    from bench.table import render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("people", nargs="?", type=int, default=SIZES["full"][0])
    parser.add_argument("--at-once", type=int, default=AT_ONCE, help="people walking at once")
    parser.add_argument("--time-limit", type=float, default=SIZES["full"][1], help="seconds")
    parser.add_argument(
        "--while-sending",
        action="store_true",
        help="start as soon as the campaign starts: each person clicks when their notice arrives",
    )
    args = parser.parse_args()
    result = run(args.people, args.at_once, args.time_limit, args.while_sending)
    print(render(rows(result)))
    tally = result.tally
    print(
        f"\n{tally.started:,} people started, {tally.verified:,} verified, {tally.finished:,} "
        f"through the plan, {result.not_started:,} not started (time limit) in "
        f"{result.seconds:.1f} s"
    )
    print("setup: " + ", ".join(f"{name} {s:.1f} s" for name, s in result.setup.items()))
    print(
        "CPU (and the run-queue wait) during the herd: "
        + ", ".join(f"{name} {s:.1f} s" for name, s in result.cpu.items())
        + f" (over {result.seconds:.1f} s on {os.cpu_count()} cores; Redis not counted)"
    )
    for (step, what), count in tally.errors.most_common():
        print(f"error: {step}: {what} x{count}")


if __name__ == "__main__":
    main()
