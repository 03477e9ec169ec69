"""No secret in any log: link tokens, codes, passwords and cookies stay out of every log line."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from portal import ROOT
from portal.extensions import db
from portal.models import Case
from portal.services import cases, staff
from portal.services.customers import find_by_email
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web.security import ScrubTokens, scrub
from tests.conftest import BASE_URL, base_env, customer_row, free_port
from tests.customer_flow import link_path, messages_to, sign_in
from tests.staff_flow import set_up

ANN = "ann.canary@example.com"
WRITER = "writer.canary@example.net"
AGENT = "agent.canary@example.com"
NEWCOMER = "newcomer.canary@example.com"

# gunicorn's default access line, then what an operator might add: the request's cookies, the
# response's Set-Cookie, the raw environ's cookie header and the request id.
ACCESS_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
    '"%({cookie}i)s" "%({set-cookie}o)s" "%({http_cookie}e)s" %({x-request-id}o)s'
)


def _link_in(address: str, path: str) -> str:
    """The path of the newest link to `path` mailed to address."""
    for message in reversed(messages_to(address)):
        for line in message.text.splitlines():
            if line.startswith(BASE_URL + path):
                return line.removeprefix(BASE_URL)
    raise AssertionError(f"no {path} link was mailed to {address}")


@pytest.fixture
def live_secrets(app, incident, write_csv, clock) -> dict[str, str]:
    """One live secret of every kind a request can carry, made as the portal makes them."""
    import_customers(incident, write_csv([customer_row(1, email=ANN, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    agent = app.test_client()
    set_up(app, agent, AGENT, "agent", clock)
    invitation = staff.invite(NEWCOMER, "agent", actor="test").removeprefix(BASE_URL)
    cases.help_request(name="Wanda Writer", contact=WRITER, reference="", body="No code came.")
    db.session.flush()
    member = staff.by_email(AGENT)
    cases.reply(member, db.session.scalars(select(Case)).one(), "Here is our answer.")
    (ann,) = find_by_email(ANN)
    cases.confirm_identity(member, ann, "Checked by phone")
    db.session.commit()
    customer = app.test_client()
    assert sign_in(customer, ANN).status_code == 200
    return {
        "notice link": link_path(ANN),
        "staff set-up link": invitation,
        "help-case link": _link_in(WRITER, "/help/case/"),
        "assisted sign-in link": _link_in(ANN, "/assisted/"),
        "staff cookie": agent.get_cookie("portal_staff").value,
        "customer cookie": customer.get_cookie("portal").value,
    }


def _token(path: str) -> str:
    return path.rsplit("/", 1)[1]


class Server:
    """gunicorn serving this checkout, its access and error logs in files."""

    def __init__(self, database_url: str, folder) -> None:
        self.port = free_port()
        self.logs = {name: folder / f"{name}.log" for name in ("access", "error", "output")}
        env = {
            **os.environ,
            **base_env(database_url),
            "PORTAL_INSTANCE_PATH": str(folder / "instance"),
            "PYTHONPATH": str(ROOT),
        }
        self.output = self.logs["output"].open("w")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "wsgi:app"),
                *("--bind", f"127.0.0.1:{self.port}", "--workers", "1"),
                *("--access-logfile", str(self.logs["access"])),
                *("--access-logformat", ACCESS_FORMAT),
                *("--error-logfile", str(self.logs["error"])),
                *("--log-level", "debug"),  # gunicorn's debug lines name every path too
                "--no-control-socket",  # tests may run side by side
                "--capture-output",  # what the app writes to stderr goes to the error log
            ],
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/healthz")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("gunicorn did not start: " + self.read("output", "error"))
                time.sleep(0.2)

    def get(self, path: str, **headers: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self.output.close()

    def read(self, *names: str) -> str:
        return "".join(self.logs[name].read_text() for name in names if self.logs[name].exists())


@pytest.fixture
def gunicorn(database_url, tmp_path):
    """Start the real server on a free loopback port; stop it afterwards."""
    server = Server(database_url, tmp_path)
    yield server
    server.stop()


@pytest.mark.slow
def test_gunicorn_logs_every_request_with_its_tokens_and_cookies_replaced(live_secrets, gunicorn):
    staff_cookie, customer_cookie = live_secrets["staff cookie"], live_secrets["customer cookie"]
    cookies = f"portal_staff={staff_cookie}; portal={customer_cookie}"
    links = [
        live_secrets[name]
        for name in ("notice link", "staff set-up link", "help-case link", "assisted sign-in link")
    ]
    for path in links:
        assert gunicorn.get(path) == 200, path
    # A page opened from the link page sends the link as its Referer (same origin).
    assert gunicorn.get("/verify", Referer=BASE_URL + links[0]) in (200, 302)
    assert gunicorn.get("/staff/cases", Cookie=cookies) == 200
    assert gunicorn.get("/me", Cookie=cookies) == 200
    gunicorn.stop()

    access, everything = gunicorn.read("access"), gunicorn.read("access", "error", "output")
    assert "Logging error" not in everything
    for name, secret in live_secrets.items():
        value = _token(secret) if name.endswith("link") else secret
        assert value not in everything, f"the {name} is in a log"
    lines = access.splitlines()
    # One line per request: the start-up check, the four links, then three pages.
    assert len(lines) == 1 + len(links) + 3, access
    for line, path in zip(lines[1:], links, strict=False):
        assert f'"GET {path.rsplit("/", 1)[0]}/[token] HTTP/1.1" 200' in line, line
    assert "portal_staff=[cookie]; portal=[cookie]" in lines[-1]


# --- the filter, on gunicorn's own access logger in this process ---


def test_gunicorn_access_atoms_stay_a_mapping_without_a_token_or_cookie(app, tmp_path):
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("access_log_format", ACCESS_FORMAT + " %({authorization}i)s %(D)d %({absent}i)s")
    logger = Logger(config)
    token, session = "eyJbm90aWNl.abc.def", "s3ss10n-v4lu3"
    headers = [("Cookie", f"portal={session}; lb=sticky-7"), ("Authorization", "Bearer k3y")]
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/a/{token}",
        "PATH_INFO": f"/a/{token}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_COOKIE": headers[0][1],
        "HTTP_REFERER": f"{BASE_URL}/help/case/{token}",
    }
    response = SimpleNamespace(
        status="200 OK", headers=[("Set-Cookie", f"portal={session}; Path=/")], sent=12
    )
    try:
        logger.access(response, SimpleNamespace(headers=headers), environ, timedelta(seconds=1))
    finally:
        for handler in logging.getLogger("gunicorn.access").handlers:
            handler.close()
        logging.getLogger("gunicorn.access").handlers.clear()
    line = (tmp_path / "access.log").read_text()
    assert line.count("\n") == 1, line
    assert token not in line and session not in line and "k3y" not in line
    assert f'"GET /a/[token] HTTP/1.1" 200 12 "{BASE_URL}/help/case/[token]"' in line
    assert '"portal=[cookie]; lb=[cookie]" "portal=[cookie]; Path=/"' in line
    assert line.rstrip().endswith(" [redacted] 1000000 -")  # numbers stay numbers; absent is "-"


def test_a_tuple_stays_a_tuple_and_numbers_stay_numbers():
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        "",
        0,
        '%s "%s" %d %.1f',
        ("127.0.0.1", "GET /staff/setup/eyJpbnZpdGU.x.y HTTP/1.1", 200, 0.5),
        None,
    )
    ScrubTokens().filter(record)
    assert record.getMessage() == '127.0.0.1 "GET /staff/setup/[token] HTTP/1.1" 200 0.5'


def test_scrub_replaces_every_kind_of_secret_it_knows():
    text = (
        "/a/tok1 /assisted/tok2?x=1 /help/case/tok3 /staff/setup/tok4 next=%2Fa%2Ftok5 "
        "__Host-portal_staff=c00k1e; portal=c00k2e "
        "['PORTAL_SECRET_KEY=s3cr3t', 'PORTAL_DATA_KEYS=k3y'] postgresql://app:pa55@db/portal"
    )
    assert scrub(text) == (
        "/a/[token] /assisted/[token]?x=1 /help/case/[token] /staff/setup/[token] "
        "next=%2Fa%2F[token] __Host-portal_staff=[cookie]; portal=[cookie] "
        "['PORTAL_SECRET_KEY=[secret]', 'PORTAL_DATA_KEYS=[secret]'] "
        "postgresql://app:[password]@db/portal"
    )
