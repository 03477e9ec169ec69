"""The fault run (issue 13): the production set-up holds under faults.

Two outbox workers and gunicorn on a PostgreSQL cluster the test starts itself, a real SMTP server
that goes away and is slow, a private Redis: the mail server is down for a while, a worker is
killed with SIGKILL mid-batch again and again, the database is restarted, Redis hangs. Nothing is
lost, at most one message is sent twice per kill (and one per worker whose acceptance the
database restart kept it from recording), the workers are still there, 503 and not 500 while the
database is away (and /readyz says so; a request cut off in the instant it stops is reported
apart), no 500 once it is back, and a 503 within a second while
Redis hangs.

It brings its own PostgreSQL, so it runs in the SQLite pass of CI and is skipped in the
PostgreSQL pass (the same run twice would prove nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from portal import ROOT
from tests.conftest import PG_URL, base_env, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(PG_URL), reason="the fault run brings its own PostgreSQL: it runs in the SQLite pass"
    ),
]

MESSAGES = 1500
CUSTOMERS = 25
KILLS = 5
SMTP_DOWN_SECONDS = 5
DB_DOWN_SECONDS = 3
# After the database is back, the pool may still hold a connection from before: a few seconds'
# grace, then no 500 at all.
DB_GRACE_SECONDS = 5
DRAIN_TIMEOUT = 90
# The issue asks for a 503 "within a second" while Redis hangs; the bound leaves room for a busy
# machine, and the request waits long enough to show how long it stalls without the fix.
REDIS_BOUND_SECONDS = 1.5
REDIS_WAIT_LIMIT = 35
CLIENT_TIMEOUT = 10
WORKER = (sys.executable, "-c", "from portal.cli import main; main()")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path.name}: unreadable)"
    # A SQL error line carries every bound parameter: cut each line short.
    shown = (line if len(line) <= 300 else line[:300] + " ..." for line in content[-lines:])
    return f"--- {path.name} (last {lines} lines)\n" + "\n".join(shown)


def _errors(path: Path, count: int = 8) -> str:
    """The last distinct exception lines of a log (what each 500 was)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if re.match(r"[\w.]+(Error|Exception|Exit)\b", line) and line[:200] not in found:
                found.append(line[:200])
    return f"--- {path.name} (exceptions)\n" + "\n".join(found[-count:])


# --- PostgreSQL: a cluster of our own, run as the postgres user (it refuses root) ---


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() != 0:
        return list(command)  # not root: the cluster is simply ours
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return ["su", "postgres", "-c", " ".join(f"'{part}'" for part in command)]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        pytest.fail(
            f"the fault run needs PostgreSQL's {name} (/usr/lib/postgresql/*/bin or PATH): it "
            "starts a cluster of its own"
        )
    return on_path


class Cluster:
    """A PostgreSQL cluster in a temporary directory, on its own port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/portal"
        self.pg_ctl = _pg_bin("pg_ctl")

    def create(self) -> None:
        folder = self.folder
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        self._run(
            _pg_bin("createdb"), "-h", str(folder), "-p", str(self.port), "-U", "postgres", "portal"
        )

    def _run(self, *command: str) -> None:
        done = subprocess.run(_as_postgres(*command), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            _as_postgres(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the mail server: records Message-IDs, can be slow, can vanish and come back ---


@dataclass
class Sink:
    """An aiosmtpd server on a fixed port: stop() refuses connections until start()."""

    port: int = field(default_factory=free_port)
    delay: float = 0.06  # each message takes a while, so a worker is mid-batch when killed
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (Message-ID, when)
    # Client port -> when that connection last handed over a message (which worker is sending).
    last_data: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None
    sessions: set = field(default_factory=set)

    async def handle_DATA(self, server, session, envelope):
        self.sessions.add(server)
        with self.lock:
            self.last_data[session.peer[1]] = time.monotonic()
        await asyncio.sleep(self.delay)
        match = _MESSAGE_ID.search(envelope.original_content or envelope.content)
        with self.lock:
            now = time.monotonic()
            self.arrivals.append((match.group(1).decode() if match else "<none>", now))
            self.last_data[session.peer[1]] = now
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        """The server vanishes: open connections are dropped, new ones refused."""
        controller, self.controller = self.controller, None
        if controller is None:
            return

        def drop() -> None:
            for server in list(self.sessions):
                if server.transport is not None:
                    server.transport.close()
            self.sessions.clear()

        controller.loop.call_soon_threadsafe(drop)
        time.sleep(0.1)
        controller.stop()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def sending_from(self, ports: set[int], within: float = 0.5) -> bool:
        now = time.monotonic()
        with self.lock:
            return any(now - self.last_data.get(port, -1e9) < within for port in ports)


def _smtp_ports(pid: int, smtp_port: int) -> set[int]:
    """The local ports of the process's TCP connections to the mail server (from /proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            next(handle)
            for line in handle:
                cols = line.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if remote_port == smtp_port and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# --- customers: concurrent GETs, each answer recorded with its time ---


@dataclass
class Answer:
    path: str
    started: float
    ended: float
    status: int | str  # an HTTP status, or what went wrong ("timeout", "reset", ...)


def _request(port: int, method: str, path: str, body: str = "", headers=None, timeout=10.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace"), response.getheaders()
    finally:
        connection.close()


def _status_of(port: int, path: str) -> int | str:
    try:
        return _request(port, "GET", path, timeout=CLIENT_TIMEOUT)[0]
    except Exception as exc:  # what went wrong is the answer here
        return type(exc).__name__


class Customers:
    """Threads that browse the public pages until stopped."""

    # The front page with a query string is never served from the page cache: it reads the
    # database each time (the plain front page may be served from the cache while it is down).
    READS_DB = "/?from=letter"
    PATHS = ("/", READS_DB, "/healthz", "/signin", "/help")

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._browse, args=(n,), daemon=True) for n in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _browse(self, n: int) -> None:
        turn = n
        while not self.stopping.is_set():
            path = self.PATHS[turn % len(self.PATHS)]
            turn += 1
            started = time.monotonic()
            try:
                status: int | str = _request(self.port, "GET", path, timeout=CLIENT_TIMEOUT)[0]
            except TimeoutError:
                status = "timeout"
            except Exception as exc:  # the answer is the record: a reset, a refused connection
                status = type(exc).__name__
            with self.lock:
                self.answers.append(Answer(path, started, time.monotonic(), status))
            self.stopping.wait(0.2)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT + 5)


# --- the whole set-up ---


class Run:
    """Every process of the fault run, so that a finally can end them all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.files: list = []
        self.worker_logs: list[Path] = []
        self.generation = 0

    def spawn(self, command, log: Path, env: dict, **kwargs) -> subprocess.Popen:
        output = log.open("w")
        self.files.append(output)
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, **kwargs
        )
        self.processes.append(process)
        return process

    def worker(self, env: dict) -> subprocess.Popen:
        self.generation += 1
        log = self.folder / f"worker-{self.generation}.log"
        self.worker_logs.append(log)
        return self.spawn([*WORKER, "outbox", "work", "--idle-seconds", "0.2"], log, env)

    def end(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a stopped Redis dies only when woken
                    if process.args[:3] == [sys.executable, "-m", "gunicorn"]:
                        os.killpg(process.pid, signal.SIGKILL)
                    else:
                        process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        for output in self.files:
            output.close()


# Queued the way the portal queues, in a process of its own: an app made in the test process would
# point the one Flask-Limiter object at this run's Redis, which is gone afterwards.
_QUEUE = f"""
from portal import create_app, unit_of_work
from portal.services.outbox import enqueue_email

with create_app().app_context():
    for n in range({MESSAGES}):
        enqueue_email(
            dedupe_key=f"faultrun:{{n}}",
            recipient=f"person{{n}}@example.com",
            subject="About the incident",
            text=f"Message {{n}}.",
            html=f"<p>Message {{n}}.</p>",
        )
    unit_of_work.commit()
"""


def _wait_for(check, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM outbox_message GROUP BY status"))
        return {status: count for status, count in rows}


def test_the_portal_holds_under_faults_nothing_lost_nothing_sent_twice_nothing_stalls():
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="portal-faultrun-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    run = Run(folder)
    cluster = sink = customers = engine = None
    try:
        cluster = Cluster(folder)
        cluster.create()
        redis_port = free_port()
        redis_command = [
            *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ]
        redis = run.spawn(redis_command, folder / "redis.log", dict(os.environ))
        sink = Sink()
        sink.start()
        (folder / "instance").mkdir()
        env = {
            **os.environ,
            **base_env(
                cluster.url,
                PORTAL_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                PORTAL_SMTP_URL=f"smtp://127.0.0.1:{sink.port}",
                # The worker's pauses, short for a run of minutes: its wait while a server or the
                # database is away, and the lease after which a killed worker's claim is due
                # again (the least the portal allows with a 2 s mail timeout).
                PORTAL_OUTBOX_RETRY_BASE_SECONDS="1",
                PORTAL_OUTBOX_BACKOFF_MAX_SECONDS="2",
                PORTAL_SMTP_TIMEOUT_SECONDS="2",
                PORTAL_OUTBOX_LEASE_SECONDS="14",
                PORTAL_INSTANCE_PATH=str(folder / "instance"),
            ),
            "PYTHONPATH": str(ROOT),
        }
        migrated = subprocess.run(
            [*WORKER, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        queued = subprocess.run(
            [sys.executable, "-c", _QUEUE], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert queued.returncode == 0, queued.stdout + queued.stderr
        engine = create_engine(cluster.url, pool_pre_ping=True)
        with engine.connect() as conn:
            message_ids = list(conn.scalars(text("SELECT message_id FROM outbox_message")))
        assert len(message_ids) == MESSAGES

        web_port = free_port()
        gunicorn = run.spawn(
            [
                *(sys.executable, "-m", "gunicorn", "wsgi:app", "-w", "2"),
                *("-b", f"127.0.0.1:{web_port}", "--no-control-socket"),
            ],
            folder / "gunicorn.log",
            env,
            start_new_session=True,
        )

        def web_up() -> bool:
            with contextlib.suppress(OSError):
                return _request(web_port, "GET", "/healthz", timeout=2)[0] == 200
            return False

        assert _wait_for(web_up, 60, 0.2), _tail(folder / "gunicorn.log")
        assert gunicorn.poll() is None
        set_up_seconds = time.monotonic() - began

        customers = Customers(web_port, CUSTOMERS)
        customers.start()
        workers = [run.worker(env), run.worker(env)]
        assert _wait_for(lambda: sink.count() >= 50, 60), "no delivery started:\n" + "\n".join(
            _tail(log) for log in run.worker_logs
        )

        # a. The mail server vanishes for a while, then comes back.
        sink.stop()
        time.sleep(SMTP_DOWN_SECONDS)
        sink.start()

        # b. SIGKILL a worker while it is handing messages to the server; a supervisor restarts it.
        kills = mid_batch = 0
        for n in range(KILLS):
            slot = n % 2
            pid = workers[slot].pid
            mid_batch += _wait_for(
                lambda pid=pid: sink.sending_from(_smtp_ports(pid, sink.port)), 40, 0.02
            )
            time.sleep(0.5)  # well into the batch: on main, all it handed over goes again
            workers[slot].kill()
            workers[slot].wait()
            kills += 1
            workers[slot] = run.worker(env)
            time.sleep(1)

        # c. The database restarts under them; the workers are NOT restarted afterwards.
        arrivals_before_restart = sink.count()
        db_stopping = time.monotonic()
        cluster.stop("fast")
        db_down = time.monotonic()
        time.sleep(DB_DOWN_SECONDS / 2)
        ready_while_down = _status_of(web_port, "/readyz")
        time.sleep(DB_DOWN_SECONDS / 2)
        db_starting = time.monotonic()
        cluster.start()
        db_back = time.monotonic()
        time.sleep(DB_GRACE_SECONDS + 3)  # and some traffic after the grace
        ready_after = _status_of(web_port, "/readyz")

        # d. Redis hangs (SIGSTOP): a rate-limited POST must get its 503 quickly.
        _status, page, headers = _request(web_port, "GET", "/signin")
        cookie = "; ".join(
            value.split(";", 1)[0] for name, value in headers if name.lower() == "set-cookie"
        )
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert token, "the sign-in page has no CSRF token"
        form = f"csrf_token={token.group(1)}&email=nobody%40example.com&code=000000"
        post_headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        # With Redis answering, the form reaches the view (a wrong code: 422), so the answer
        # while it hangs is the limiter's.
        healthy = _request(web_port, "POST", "/signin", form, post_headers)[0]

        def sign_in() -> tuple[int | str, float]:
            started = time.monotonic()
            try:
                status: int | str = _request(
                    web_port, "POST", "/signin", form, post_headers, timeout=REDIS_WAIT_LIMIT
                )[0]
            except TimeoutError:
                status = f"no answer in {REDIS_WAIT_LIMIT} s"
            except Exception as exc:  # what went wrong is the answer here
                status = type(exc).__name__
            return status, time.monotonic() - started

        os.kill(redis.pid, signal.SIGSTOP)
        try:
            hung, redis_seconds = sign_in()
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        # e. Redis gone (killed), then back on its port: 503 meanwhile, sign-in works again after.
        redis.kill()
        redis.wait()
        gone, gone_seconds = sign_in()
        redis = run.spawn(redis_command, folder / "redis-2.log", dict(os.environ))

        def redis_up() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", redis_port), timeout=1) as connection,
            ):
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
            return False

        assert _wait_for(redis_up, 10), _tail(folder / "redis-2.log")
        back = sign_in()[0]
        time.sleep(2)
        customers.stop()

        # The end: everything queued leaves (or the workers are gone).
        def drained() -> bool:
            with contextlib.suppress(Exception):  # the database may still be refusing
                return _counts(engine).get("queued", 0) == 0
            return False

        _wait_for(lambda: drained() or all(w.poll() is not None for w in workers), DRAIN_TIMEOUT, 1)
        time.sleep(1)  # the last acceptance's commit
        counts = _counts(engine)

        with sink.lock:
            arrivals = list(sink.arrivals)
        arrived = Counter(message_id for message_id, _when in arrivals)
        lost = [m for m in message_ids if m not in arrived]
        duplicates = sum(n - 1 for n in arrived.values() if n > 1)
        # Which repeats were first sent as the database went away (accepted, not yet recorded)?
        first_at = {}
        for message_id, when in arrivals:
            first_at.setdefault(message_id, when)
        around_restart = sum(
            n - 1
            for message_id, n in arrived.items()
            if n > 1 and db_stopping - 1 <= first_at[message_id] <= db_back
        )
        alive = [w.poll() is None for w in workers]
        exits = [w.returncode for w in workers]
        answers = list(customers.answers)
        reads_db = [a for a in answers if a.path == Customers.READS_DB]
        while_down = [a for a in reads_db if a.started >= db_down and a.ended <= db_starting]
        grace_end = db_back + DB_GRACE_SECONDS
        in_grace = [a for a in answers if db_starting <= a.started < grace_end]
        counted = [a for a in answers if a not in in_grace]
        # A request whose connection the database ended as it shut down ("terminating connection
        # due to administrator command") may get a 500 in that instant: the issue asks for no 500
        # once the database is back, and 503 while it is down. Those cut off are reported apart.
        cut_off = [
            a for a in counted if a.status == 500 and db_stopping - 1 <= a.started <= db_down
        ]
        errors_500 = [a for a in counted if a.status == 500 and a not in cut_off]
        errors_500_after = [a for a in errors_500 if a.started >= grace_end]
        no_answer = [a for a in counted if not isinstance(a.status, int)]
        late = max((a.ended - a.started for a in answers), default=0.0)
        summary = (
            f"fault run: {MESSAGES} queued, {len(set(arrived))} arrived, {len(lost)} lost, "
            f"{duplicates} duplicates over {kills} SIGKILLs ({mid_batch} mid-batch; "
            f"{around_restart} of them first sent as the database went down), "
            f"outbox {counts}, workers alive {alive} (exit codes {exits}); "
            f"{len(answers)} customer answers: while the database was down "
            f"{dict(Counter(a.status for a in while_down))} for GET {Customers.READS_DB}, "
            f"500s {len(errors_500)} ({len(errors_500_after)} after the grace, "
            f"{len(cut_off)} cut off as the database stopped, "
            f"{sum(a.status == 500 for a in in_grace)} in it), "
            f"no answer {dict(Counter(a.status for a in no_answer))}, slowest {late:.1f} s; "
            f"/readyz {ready_while_down} while down, {ready_after} after; "
            f"POST /signin with Redis up {healthy}, with Redis hung {hung} in "
            f"{redis_seconds:.2f} s, with Redis gone {gone} in {gone_seconds:.2f} s, "
            f"back {back}; {sink.count() - arrivals_before_restart} arrivals after "
            f"the database restart; set-up {set_up_seconds:.0f} s, "
            f"run {time.monotonic() - began:.0f} s"
        )
        print("\n" + summary)

        problems = []
        if lost:
            problems.append(f"{len(lost)} message(s) never arrived")
        # One repeat per kill (the message the server had accepted when the worker died), and
        # at most one per worker for the database going away between the server's acceptance
        # and the worker's record of it.
        if duplicates - around_restart > kills or around_restart > len(workers):
            problems.append(
                f"{duplicates} duplicates for {kills} kills "
                f"({around_restart} as the database went down)"
            )
        if counts.get("failed", 0):
            problems.append(f"{counts['failed']} message(s) failed for good")
        if not all(alive):
            problems.append(f"worker(s) gone after the database restart: exit codes {exits}")
        if errors_500:
            # When, against the database's restart: before it (< 0), while it was down, after.
            at = ", ".join(f"{a.path} at {a.started - db_stopping:+.1f} s" for a in errors_500[:5])
            problems.append(f"{len(errors_500)} answer(s) 500 outside the grace ({at})")
        if not while_down or any(a.status != 503 for a in while_down):
            problems.append(
                f"GET {Customers.READS_DB} answered other than 503 while the database was down"
            )
        if (ready_while_down, ready_after) != (503, 200):
            problems.append(
                f"/readyz answered {ready_while_down} with the database down, "
                f"{ready_after} once it was back"
            )
        if no_answer:
            problems.append(f"{len(no_answer)} request(s) without an answer")
        if healthy != 422:
            problems.append(f"POST /signin with Redis up answered {healthy}, not 422")
        if hung != 503 or redis_seconds >= REDIS_BOUND_SECONDS:
            problems.append(f"POST /signin with Redis hung: {hung} after {redis_seconds:.1f} s")
        if gone != 503 or gone_seconds >= REDIS_BOUND_SECONDS:
            problems.append(f"POST /signin with Redis gone: {gone} after {gone_seconds:.1f} s")
        if back != 422:
            problems.append(f"POST /signin with Redis back answered {back}, not 422")
        logs = "\n".join(
            [_tail(log) for log in (*run.worker_logs[-2:], cluster.log)]
            + [_errors(folder / "gunicorn.log")]
        )
        assert not problems, "; ".join(problems) + "\n" + summary + "\n" + logs
    finally:
        if customers is not None:
            customers.stop()
        if engine is not None:
            engine.dispose()
        run.end()
        if sink is not None:
            sink.stop()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)
