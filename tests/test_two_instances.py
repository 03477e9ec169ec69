"""Scale-out (issue 14, acceptance 3): two app instances and two workers, one database, one Redis.

Two gunicorns started with gunicorn.conf.py, each on its own port, and two `portal outbox work`
processes (they run the background jobs too) against ONE PostgreSQL database this test creates
and drops, ONE Redis database and a real SMTP server on loopback. A person walks the whole way in
through both instances: the notice's link opened on A, the code asked for on A and typed on B,
the dashboard and the plan read on B and A with the same cookies. A second person's wrong codes,
typed on A and on B, use up one code's tries together; and a rate limit counts the requests to A
and to B as one. Nothing may live in one process: whatever instance answers, the answer is the
same.

It needs PostgreSQL (several processes writing one SQLite file is not a deployment): it runs in
the PostgreSQL pass of CI and is skipped in the SQLite pass.
"""

from __future__ import annotations

import contextlib
import csv
import email
import email.policy
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from portal import ROOT
from tests.conftest import BASE_URL, HEADER, INCIDENT, REDIS_URL, base_env, free_port, pg_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not pg_url(),
        reason="several instances need PostgreSQL: this runs in the PostgreSQL pass of CI",
    ),
]

PORTAL = (sys.executable, "-c", "from portal.cli import main; main()")
CONF = ROOT / "gunicorn.conf.py"
WAIT_SECONDS = 60
ANN = "ann.two@example.com"
BOB = "bob.two@example.com"
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# --- one database of the test's own, on the PostgreSQL the suite was given ---


class OwnDatabase:
    """A database named after the suite's (`<name>_two_instances`), created empty, dropped after."""

    def __init__(self) -> None:
        suite = make_url(pg_url())
        self.name = f"{suite.database}_two_instances"
        self.url = suite.set(database=self.name).render_as_string(hide_password=False)
        self.server = create_engine(pg_url(), isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        with self.server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        with self.server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.server.dispose()


# --- the processes ---


APPROVE = """
from portal import create_app
from portal.services.incidents import get_by_slug
from tests.approval_flow import approve_campaign
with create_app().app_context():
    approve_campaign(get_by_slug("acme-2026"))
"""


class Processes:
    """Every process the test starts, so that a finally can end them all."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*PORTAL, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"portal {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        with log.open("w") as output:  # the process keeps its own copy
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**self.env, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((process, log))
        return process

    def web(self, name: str) -> int:
        """An app instance: gunicorn with the repository's conf, on a port of its own."""
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "-c", str(CONF), "wsgi:app"]
        process = self.spawn(name, command, PORTAL_WEB_BIND=f"127.0.0.1:{port}")
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                if Browser(port).send("GET", "/readyz")[0] == 200:
                    return port
            time.sleep(0.2)
        pytest.fail(f"{name} did not become ready:\n{self.logs()}")

    def worker(self, name: str) -> None:
        self.spawn(name, [*PORTAL, "outbox", "work", "--idle-seconds", "0.2"])

    def alive(self) -> bool:
        return all(process.poll() is None for process, _log in self.started)

    def logs(self, lines: int = 12) -> str:
        shown = []
        for _process, log in self.started:
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                shown.append(f"--- {log.name}\n" + "\n".join(line[:300] for line in tail))
        return "\n".join(shown)

    def end(self) -> None:
        for process, _log in self.started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process, _log in self.started:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


# --- a person's browser: one cookie jar, whichever instance it talks to ---


class Browser:
    """Real HTTP to one instance at a time; the cookies go wherever the person goes next, as
    they would behind a load balancer that spreads requests over the instances."""

    def __init__(self, port: int, jar: dict[str, str] | None = None) -> None:
        self.port = port
        self.jar = jar if jar is not None else {}

    def on(self, port: int) -> Browser:
        """The same person (the same cookies) on another instance."""
        return Browser(port, self.jar)

    def send(self, method: str, path: str, form: dict | None = None) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.jar.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            page = response.read().decode(errors="replace")
            for header in response.headers.get_all("Set-Cookie") or ():
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0]
                if value and "max-age=0" not in header.lower():
                    self.jar[name.strip()] = value
                else:
                    self.jar.pop(name.strip(), None)
            return response.status, page, response.getheader("Location") or ""
        finally:
            connection.close()

    def form(self, path: str, **fields: str) -> tuple[int, str, str]:
        """Open the page, then post its form with its CSRF token, as a person pressing it."""
        status, page, _location = self.send("GET", path)
        assert status == 200, (path, status)
        found = _TOKEN.search(page)
        assert found, f"{path} has no CSRF token"
        return self.send("POST", path, {"csrf_token": found.group(1), **fields})


# --- the mail that reached the SMTP server ---


def _texts_to(sink, address: str) -> list[str]:
    texts = []
    with sink.lock:
        envelopes = list(sink.messages)
    for envelope in envelopes:
        if address not in envelope.rcpt_tos:
            continue
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        texts.append(message.get_body(("plain",)).get_content())
    return texts


def _wait_for_line(sink, address: str, pattern: str, seen: int = 0) -> tuple[str, int]:
    """The first line matching pattern in a message to address after the first `seen` ones."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        texts = _texts_to(sink, address)
        for body in texts[seen:]:
            for line in body.splitlines():
                if re.fullmatch(pattern, line.strip()):
                    return line.strip(), len(texts)
        time.sleep(0.1)
    raise AssertionError(f"no message to {address} with a line like {pattern!r}")


def test_two_instances_and_two_workers_share_one_database_and_one_redis(tmp_path, smtp_server):
    sink, controller = smtp_server
    database = OwnDatabase()
    env = {
        **os.environ,
        **base_env(
            database.url,
            PORTAL_REDIS_URL=REDIS_URL,
            PORTAL_SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
            PORTAL_INSTANCE_PATH=str(tmp_path / "instance"),  # made by conftest
            PORTAL_WEB_WORKERS="1",
            PORTAL_WEB_ACCESS_LOG="",  # the two logs stay readable
        ),
        "PYTHONPATH": str(ROOT),
    }
    processes = Processes(tmp_path, env)
    try:
        database.create()
        # The operator's way: migrate, create the incident, import, queue the notices.
        processes.run("db", "upgrade")
        processes.run(
            *("incident", "create", "--slug", INCIDENT["slug"], "--title", INCIDENT["title"]),
            *("--discovered", INCIDENT["discovered_on"].isoformat()),
        )
        people = tmp_path / "people.csv"
        with people.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            # No phone on file: the codes go by email, to the SMTP server.
            writer.writerow(["T-1", "Ann Two", ANN, "", "en", "US-CA", "payment_card:4242;ssn"])
            writer.writerow(["T-2", "Bob Two", BOB, "", "en", "US-CA", "email_address"])
        processes.run("customers", "import", "--incident", INCIDENT["slug"], str(people))
        # Legal approves the campaign (in the console; here through the service, in a process
        # of its own on the same database).
        approved = subprocess.run(
            [sys.executable, "-c", APPROVE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert approved.returncode == 0, approved.stderr
        assert "Queued 2 notice(s)." in processes.run("notices", "send", "--incident", "acme-2026")

        a, b = processes.web("instance-a"), processes.web("instance-b")
        processes.worker("worker-1")
        processes.worker("worker-2")

        # Ann: the link from her notice, opened on A; the code asked for on A.
        link, seen = _wait_for_line(sink, ANN, re.escape(BASE_URL) + r"/a/\S+")
        ann = Browser(a)
        status, _page, location = ann.form(link.removeprefix(BASE_URL))
        assert (status, location) == (302, "/verify")
        code, seen = _wait_for_line(sink, ANN, r"\d{6}", seen)

        # ... typed on B, with the cookies A gave her.
        status, _page, location = ann.on(b).form("/verify", code=code)
        assert (status, location) == (302, "/me"), "the code typed on B was refused"

        # Her dashboard and her plan, on B and on A, with the same session cookie.
        for port in (b, a):
            status, page, _location = ann.on(port).send("GET", "/me")
            assert status == 200 and "card ending 4242" in page and INCIDENT["title"] in page, port
            status, page, _location = ann.on(port).send("GET", "/me/plan")
            assert status == 200 and 'id="step-credit-freeze"' in page, port

        # Bob: the code asked for on B; five wrong codes, typed on A and on B, use up its tries
        # together, so the right one is refused afterwards on either.
        link, seen_bob = _wait_for_line(sink, BOB, re.escape(BASE_URL) + r"/a/\S+")
        bob = Browser(b)
        assert bob.form(link.removeprefix(BASE_URL))[2] == "/verify"
        code, seen_bob = _wait_for_line(sink, BOB, r"\d{6}", seen_bob)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        tries = [bob.on(port).form("/verify", code=wrong)[0] for port in (a, b, a, b, a)]
        assert tries == [422] * 5, tries
        for port in (b, a):
            status, _page, location = bob.on(port).form("/verify", code=code)
            assert location != "/me", "a code's tries were counted per instance"
        assert bob.on(a).send("GET", "/me")[2] == "/signed-out"

        # A rate limit counted in Redis: sign-in by app code, 5 tries per 15 minutes for one
        # address and email, from this one network: three on A and two on B spend it, and the
        # sixth is refused, on either instance.
        stranger = Browser(a)
        answers = [
            stranger.on(port).form("/signin", email="nobody@example.com", code="000000")[0]
            for port in (a, b, a, b, a)
        ]
        assert answers == [422] * 5, answers
        assert stranger.on(b).form("/signin", email="nobody@example.com", code="000000")[0] == 429

        assert processes.alive(), processes.logs()
    finally:
        processes.end()
        database.drop()
