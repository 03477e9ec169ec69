"""The web side under faults (issue 13): a hung Redis, the database away, SQLite under load."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

import psycopg
import pytest
import redis
from sqlalchemy import select

from portal import ROOT
from portal.extensions import db
from portal.models import Notice
from portal.services import audit, readiness, reference_codes
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.web.identity import staff_cookie_name
from tests.conftest import INCIDENT, base_env, clean_database, customer_row, free_port, pg_url
from tests.customer_flow import csrf_from

BROWSER = {"Referer": "https://localhost/"}


def _in_thread(call, wait: float):
    """Run call() in a thread; return (its result or None if still running, seconds taken).

    A hang on old code then fails the test instead of holding the suite for ever."""
    result = {}

    def run():
        result["value"] = call()

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(wait)
    return result.get("value"), time.monotonic() - started


def _is_calm_busy_page(response) -> bool:
    text = response.get_data(as_text=True)
    return "very busy" in text and "Traceback" not in text


# --- a hung Redis (finding 3) ---


@pytest.fixture
def private_redis():
    """A redis-server of this test's own on a free port: (its URL, its process)."""
    port = free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    client.close()
    yield url, server
    server.send_signal(signal.SIGCONT)
    server.kill()
    server.wait()


def test_a_hung_redis_gets_the_busy_page_within_a_second_not_a_stalled_request(
    database_url, make_app, private_redis, monkeypatch
):
    monkeypatch.setattr(readiness, "FRESH_SECONDS", 0)  # each /readyz looks afresh
    url, server = private_redis
    app = make_app(base_env(database_url, PORTAL_REDIS_URL=url))
    client = app.test_client()

    def sign_in():
        page = client.get("/signin")
        form = {"csrf_token": csrf_from(page), "email": "ann@example.com", "code": "123456"}
        return client.post("/signin", data=form, headers=BROWSER)

    assert sign_in().status_code == 422  # Redis answers: a wrong code, counted
    server.send_signal(signal.SIGSTOP)  # Redis hangs: the socket stays open, nothing answers
    response, seconds = _in_thread(sign_in, wait=15)
    assert response is not None, "the request still waited on the hung Redis after 15 s"
    assert response.status_code == 503 and _is_calm_busy_page(response)
    assert seconds < 5  # the issue asks for a bound: about a second, here generously

    ready, seconds = _in_thread(lambda: client.get("/readyz"), wait=15)
    assert ready is not None and seconds < 5
    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "ok", "redis": "down"}

    server.send_signal(signal.SIGCONT)
    assert sign_in().status_code == 422  # back as soon as Redis is
    assert client.get("/readyz").json == {"status": "ready"}


# --- the database away (finding 2, the web side) ---


def test_readyz_says_ready_when_the_database_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}


def test_readyz_answers_a_flood_of_probes_from_one_look_a_second(client, monkeypatch):
    """Review of issue 13: /readyz is public and each look opens a connection to the database
    and to Redis; a flood of probes must not become a flood of connections."""
    looks = []
    real = readiness._database
    monkeypatch.setattr(readiness, "_database", lambda: looks.append(1) or real())
    answers = {client.get("/readyz").status_code for _ in range(20)}
    assert answers == {200} and len(looks) <= 2


def test_readyz_says_which_part_is_down_when_redis_is(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "ok", "redis": "down"}


@pytest.mark.skipif(bool(pg_url()), reason="a SQLite file made unreachable")
def test_while_the_database_is_away_pages_answer_busy_and_readyz_says_so(
    migrated_database, tmp_path, make_app, caplog, monkeypatch
):
    monkeypatch.setattr(readiness, "FRESH_SECONDS", 0)  # each /readyz looks afresh
    folder = tmp_path / "data"
    folder.mkdir()
    app = make_app(base_env(clean_database(migrated_database, folder)))
    client = app.test_client()
    with app.app_context():
        create_incident(**INCIDENT, actor="test")
        db.session.commit()
        db.engine.dispose()
    assert client.get("/").status_code == 200

    folder.rename(tmp_path / "away")  # the database file can no longer be opened
    with app.app_context():
        db.engine.dispose()  # no pooled connection left that still holds the old file open
    # The front page was just rendered: it is still served from this process's cache.
    assert client.get("/").status_code == 200
    # The incident's page has not been: it reads the incident from the database.
    response = client.get(f"/incidents/{INCIDENT['slug']}")
    assert response.status_code == 503 and _is_calm_busy_page(response)
    staff = app.test_client()  # a staff cookie: the sign-in itself needs the database
    with app.app_context():
        staff.set_cookie(staff_cookie_name(), "a-staff-session")
    response = staff.get("/staff/cases")
    assert response.status_code == 503 and _is_calm_busy_page(response)
    assert "Traceback" not in caplog.text
    assert "database unavailable: OperationalError: unable to open database file" in caplog.text
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "down", "redis": "ok"}
    health = client.get("/healthz")  # liveness: the process is alive, whatever the database
    assert health.status_code == 200 and health.json == {"status": "ok"}

    (tmp_path / "away").rename(folder)
    assert client.get("/").status_code == 200
    assert client.get("/readyz").json == {"status": "ready"}


def _silent_listener():
    """A port that accepts connections and never says a word (a hung or firewalled server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


@pytest.mark.parametrize("server", ["closed port", "silent server"])
def test_postgresql_away_answers_busy_within_seconds(make_app, server):
    listener = _silent_listener() if server == "silent server" else None
    port = listener.getsockname()[1] if listener else free_port()
    url = f"postgresql://portal@127.0.0.1:{port}/portal"
    try:
        client = make_app(base_env(url)).test_client()
        response, seconds = _in_thread(lambda: client.get("/"), wait=20)
        assert response is not None, "the request still waited for PostgreSQL after 20 s"
        assert response.status_code == 503 and _is_calm_busy_page(response)
        assert seconds < 10  # the connect timeout is 2 s; generous for a busy machine
        ready, seconds = _in_thread(lambda: client.get("/readyz"), wait=20)
        assert ready is not None and seconds < 10
        assert ready.status_code == 503 and ready.json["database"] == "down"
        assert client.get("/healthz").status_code == 200
    finally:
        if listener:
            listener.close()


# --- SQLite under load (finding 5) ---

FLOWS = 200
WRONG_CODES = 3
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Person:
    """Someone with their letter on a browser of their own, over real HTTP (own network each,
    as a crowd on notice day: the proxy in front names it in X-Forwarded-For)."""

    def __init__(self, port: int, number: int) -> None:
        self.port = port
        self.address = f"10.{number // 250}.{number % 250}.1"
        self.cookie = ""

    def send(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"X-Forwarded-For": self.address}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            if response.getheader("Set-Cookie"):
                self.cookie = response.getheader("Set-Cookie").split(";")[0]
            return response.status, text
        finally:
            connection.close()

    def form(self, path: str, **fields: str) -> int:
        status, page = self.send("GET", path)
        if status != 200:
            return status
        return self.send("POST", path, {"csrf_token": _TOKEN.search(page).group(1), **fields})[0]


def _letter_flow(person: Person, reference: str, go: threading.Barrier) -> list[int]:
    """Type the letter's code (a challenge and its message are written), then mistype the
    code that came (each try is written): the status of every POST."""
    person.send("GET", "/start")
    go.wait()  # everyone starts at once
    statuses = [person.form("/start", reference=reference)]
    for _ in range(WRONG_CODES):
        statuses.append(person.form("/verify", code="000000"))
    return statuses


@pytest.fixture
def gunicorn(tmp_path):
    """Serve this checkout with gunicorn as production does (processes with threads)."""
    started = []

    def serve(env: dict[str, str], *, workers: int, threads: int) -> int:
        port = free_port()
        env = {
            **os.environ,
            **env,
            "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
            "PYTHONPATH": str(ROOT),
        }
        with (tmp_path / "gunicorn.log").open("w") as output:  # the server keeps its own copy
            started.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "gunicorn", "wsgi:app"),
                        *("--bind", f"127.0.0.1:{port}", "--no-control-socket"),
                        *("--workers", str(workers), "--threads", str(threads)),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return port
            except OSError:
                time.sleep(0.2)
            finally:
                connection.close()
        pytest.fail("gunicorn did not start: " + (tmp_path / "gunicorn.log").read_text())

    yield serve
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.skipif(bool(pg_url()), reason="SQLite's one writer at a time")
def test_sqlite_writers_wait_their_turn_under_a_crowd_of_sign_ins(
    migrated_database, tmp_path, make_app, write_csv, gunicorn
):
    env = base_env(clean_database(migrated_database, tmp_path), PORTAL_PROXY_HOPS="1")
    app = make_app(env)
    with app.app_context():
        incident = create_incident(**INCIDENT, actor="test")
        rows = [customer_row(n, phone="") for n in range(FLOWS)]
        import_customers(incident, write_csv(rows), actor="test")
        queue_notices(incident, actor="test")
        db.session.commit()
        notices = db.session.scalars(select(Notice))
        codes = [reference_codes.display(notice.reference_code) for notice in notices]
        db.session.remove()
        db.engine.dispose()
    port = gunicorn(env, workers=4, threads=FLOWS // 4)
    answers: list[list[int]] = []
    go = threading.Barrier(len(codes))
    people = [
        threading.Thread(
            target=lambda n=n, code=code: answers.append(_letter_flow(Person(port, n), code, go))
        )
        for n, code in enumerate(codes)
    ]
    for person in people:
        person.start()
    for person in people:
        person.join(300)
    # Each gets the code page, then "that code is not right"; nobody "database is locked".
    expected = [302] + [422] * WRONG_CODES
    wrong = [statuses for statuses in answers if statuses != expected]
    assert len(answers) == len(codes) and wrong == [], wrong
    log = (tmp_path / "gunicorn.log").read_text()
    assert "database is locked" not in log
    with app.app_context():
        # Nor did the crowd fork the audit chain (SQLite has no advisory lock to guard it).
        assert not audit.verify_chain().broken


def test_an_error_raised_because_the_database_went_away_is_still_the_busy_page(client, monkeypatch):
    """The fault run saw a 500 as the database stopped: the session, asked again after its
    connection dropped, raises something other than the driver's error (PendingRollbackError).
    Whatever wraps it, a database that is away gets "try again"."""
    from sqlalchemy.exc import OperationalError, PendingRollbackError

    from portal.web.public import views

    def announced_incidents():
        try:
            closed = psycopg.OperationalError("server closed the connection unexpectedly")
            raise OperationalError("SELECT 1", {}, closed)
        except OperationalError as away:
            raise PendingRollbackError(
                "Can't reconnect until invalid transaction is rolled back"
            ) from away

    monkeypatch.setattr(views.incidents, "announced_incidents", announced_incidents)
    response = client.get("/")
    assert response.status_code == 503
    assert b"We are very busy right now" in response.data
    assert response.headers["Retry-After"] == "30"  # walking issue 13: say when to come back
