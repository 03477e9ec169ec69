"""No secret in any log: link tokens, codes, passwords and cookies stay out of every log line."""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from flask import request, request_finished
from sqlalchemy import select

from portal import ROOT
from portal.extensions import db
from portal.models import AuditEvent, Case, OutboxMessage
from portal.services import agent_tools, cases, staff, support_desk
from portal.services.customers import find_by_email
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.outbox import open_message
from portal.web.security import ScrubTokens, scrub
from tests import customer_flow, staff_flow
from tests.conftest import BASE_URL, base_env, customer_row, free_port
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    messages_to,
    sign_in,
    start_from_link,
    submit_code,
)

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
    staff_flow.set_up(app, agent, AGENT, "agent", clock)
    invitation = staff.invite(NEWCOMER, "agent", actor="test").removeprefix(BASE_URL)
    cases.help_request(name="Wanda Writer", contact=WRITER, reference="", body="No code came.")
    db.session.flush()
    member = staff.by_email(AGENT)
    support_desk.reply(member, db.session.scalars(select(Case)).one(), "Here is our answer.")
    (ann,) = find_by_email(ANN)
    agent_tools.confirm_identity(member, ann, "Checked by phone")
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

    def send(self, method: str, path: str, **headers: str) -> tuple[int, str]:
        """The answer's status and request id."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status, response.getheader("X-Request-ID", "")
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> int:
        return self.send("GET", path, **headers)[0]

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
    # A form sent without its CSRF token: the app's own warning, with the request's id.
    status, request_id = gunicorn.send("POST", links[0], Cookie=cookies)
    assert status == 400 and request_id
    gunicorn.stop()

    access, everything = gunicorn.read("access"), gunicorn.read("access", "error", "output")
    assert "Logging error" not in everything
    for name, secret in live_secrets.items():
        value = _token(secret) if name.endswith("link") else secret
        assert value not in everything, f"the {name} is in a log"
    lines = access.splitlines()
    # One line per request: the start-up check, the four links, three pages, the refused form.
    assert len(lines) == 1 + len(links) + 3 + 1, access
    for line, path in zip(lines[1:], links, strict=False):
        assert f'"GET {path.rsplit("/", 1)[0]}/[token] HTTP/1.1" 200' in line, line
    assert "portal_staff=[cookie]; portal=[cookie]" in lines[-2]
    assert '"POST /a/[token] HTTP/1.1" 400' in lines[-1] and lines[-1].endswith(request_id)
    # The app's own lines reach gunicorn's error log (--capture-output): time, level, logger,
    # request id.
    warning = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING portal\.web\.errors "
        rf"\[{request_id}\] csrf refused: ",
        re.M,
    )
    assert warning.search(gunicorn.read("error")), gunicorn.read("error")[-2000:]


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


def test_access_atoms_the_format_does_not_print_are_not_kept():
    from gunicorn.glogging import SafeAtoms

    atoms = SafeAtoms(
        {
            "r": "GET /a/eyJbm90aWNl.abc.def HTTP/1.1",
            "s": "200",
            "{cookie}i": "portal=s3ss10n-v4lu3",
            "{x-request-id}o": "req-1",
            "{authorization}i": "Bearer k3y",
        }
    )
    record = logging.LogRecord(
        "gunicorn.access",
        logging.INFO,
        "",
        0,
        '"%(r)s" %(s)s %({x-request-id}o)s %({absent}i)s',
        atoms,
        None,
    )
    record.args = atoms  # LogRecord unwraps a one-mapping tuple; gunicorn passes the mapping
    ScrubTokens().filter(record)
    assert isinstance(record.args, SafeAtoms)
    assert record.getMessage() == '"GET /a/[token] HTTP/1.1" 200 req-1 -'
    # Nothing the line does not print stays on the record for a later handler to leak.
    kept = " ".join(str(value) for value in record.args.values())
    assert "s3ss10n" not in kept and "k3y" not in kept
    assert set(record.args) <= {"r", "s", "{x-request-id}o", "{absent}i"}


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
        "__Host-portal_staff=c00k1e; portal=c00k2e"
    )
    assert scrub(text) == (
        "/a/[token] /assisted/[token]?x=1 /help/case/[token] /staff/setup/[token] "
        "next=%2Fa%2F[token] __Host-portal_staff=[cookie]; portal=[cookie]"
    )


# --- the canary: every flow that carries a secret, then every place a secret must not be ---

CANARY_PASSWORD = "canary quokka lantern 4417 velvet"
TOKEN_IN_PATH = re.compile(r"/(?:a|assisted|help/case|staff/setup)/([^/?#\s\"<]+)")


@dataclass
class ErrorPage:
    status: int
    body: str
    echoes: set[str]

    def shows(self, secret: str) -> bool:
        """The page holds the secret, beyond what its own request sent."""
        return secret in self.body and not any(secret in echo for echo in self.echoes)


class Witness:
    """What the app handed out and answered while the flows ran: every token a request carried,
    every cookie a response set (and the session ids inside them), every error page."""

    def __init__(self, app) -> None:
        self.app = app
        self.tokens: set[str] = set()
        self.cookies: set[str] = set()
        self.session_ids: set[str] = set()
        self.error_pages: list[ErrorPage] = []
        request_finished.connect(self.saw, app)

    def saw(self, _sender, response, **_extra) -> None:
        self.tokens.update(TOKEN_IN_PATH.findall(request.path))
        for header in response.headers.getlist("Set-Cookie"):
            name, _, value = header.split(";", 1)[0].partition("=")
            if not value or value == '""':
                continue  # a deletion
            self.cookies.add(value)
            if name == self.app.config["SESSION_COOKIE_NAME"]:
                signer = self.app.session_interface.get_signing_serializer(self.app)
                sid = signer.loads(value).get("sid")
                if sid:
                    self.session_ids.add(sid)
        if response.status_code >= 400:
            # What the request itself carried and the page may show back to the same person:
            # the address they opened (the language switch returns there) and the code they
            # typed (refilled so they can see a typo). Never a password, a cookie or a session.
            echoes = {request.path, request.form.get("code", "")} - {""}
            body = response.get_data(as_text=True)
            self.error_pages.append(ErrorPage(response.status_code, body, echoes))

    def close(self) -> None:
        request_finished.disconnect(self.saw, self.app)


def _delivered(sink) -> str:
    """The text of every message the SMTP server accepted, decoded."""
    texts = []
    for envelope in sink.messages:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        texts += [
            part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
        ]
    return "\n".join(texts)


@dataclass
class Received:
    recipient: str
    text: str


def _received(sink) -> list[Received]:
    """What the SMTP sink accepted, oldest first, as (recipient, text part)."""
    found = []
    for envelope in list(sink.messages):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        for recipient in envelope.rcpt_tos:
            found.append(Received(recipient, body.get_content() if body is not None else ""))
    return found


def test_no_secret_of_any_flow_reaches_a_log_an_audit_row_or_an_error_page(
    app, incident, write_csv, smtp_server, clock, caplog, runner, monkeypatch
):
    sink, controller = smtp_server
    app.config["SMTP_URL"] = f"smtp://{controller.hostname}:{controller.port}"
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):  # every logger, SQL parameters too
        caplog.set_level(logging.DEBUG, logger=name)
    witness = Witness(app)
    staff_codes: list[str] = []

    real_code_for = staff_flow.code_for

    def code_for(address, at):
        staff_codes.append(real_code_for(address, at))
        return staff_codes[-1]

    monkeypatch.setattr(staff_flow, "code_for", code_for)

    def deliver() -> None:
        result = runner.invoke(args=["outbox", "work", "--once"])
        assert result.exit_code == 0, result.output

    # A delivered message keeps no body in the outbox: links and codes are read where they
    # arrived, the mailbox (the SMTP sink).
    def received(address: str) -> list:
        return [m for m in _received(sink) if m.recipient == address]

    monkeypatch.setattr(customer_flow, "messages_to", received)
    monkeypatch.setattr(sys.modules[__name__], "messages_to", received)

    def csrf(client, path: str) -> str:
        return csrf_from(client.get(path))

    # The notice link and a code by email, then a new password (refused once: no match).
    import_customers(incident, write_csv([customer_row(1, email=ANN, phone="")]), actor="test")
    queue_notices(incident, actor="test")
    deliver()
    customer = app.test_client()
    start_from_link(customer, link_path(ANN))
    deliver()
    first_code = code_sent_to(ANN)
    assert submit_code(customer, first_code).headers["Location"] == "/me"
    form = {"csrf_token": csrf(customer, "/me/password"), "password": CANARY_PASSWORD}
    assert customer.post("/me/password", data={**form, "confirm": "other"}).status_code == 422
    changed = customer.post("/me/password", data={**form, "confirm": CANARY_PASSWORD})
    assert changed.headers["Location"] == "/me"

    # A new link; on its page the spent code is typed again and refused.
    visitor = app.test_client()
    asked = visitor.post("/link/new", data={"csrf_token": csrf(visitor, "/link/new"), "email": ANN})
    assert asked.status_code == 302
    deliver()
    start_from_link(visitor, link_path(ANN))
    assert submit_code(visitor, first_code).status_code == 422
    deliver()

    # Staff: invitation, set-up, out, and in again (the right password with a wrong code first).
    agent = app.test_client()
    recovery_codes = staff_flow.set_up(app, agent, AGENT, "agent", clock)
    agent.post("/staff/logout", data={"csrf_token": csrf(agent, "/staff/cases")})
    clock.tick()
    page = agent.get("/staff/login")
    agent.post(
        "/staff/login",
        data={"csrf_token": csrf_from(page), "email": AGENT, "password": staff_flow.PASSWORD},
    )
    wrong = agent.post("/staff/code", data={"csrf_token": csrf(agent, "/staff/code"), "code": "1"})
    assert wrong.status_code == 422
    assert staff_flow.log_in(agent, AGENT, clock).headers["Location"] == "/staff/cases"

    # The agent mails an assisted sign-in link; it is used, then opened again.
    (ann,) = find_by_email(ANN)
    record = f"/staff/customers/{ann.public_id}"
    confirmed = agent.post(
        f"{record}/tools/confirm-identity",
        data={"csrf_token": csrf(agent, record), "reason": "Checked by phone"},
    )
    assert confirmed.headers["Location"] == record
    deliver()
    assisted = _link_in(ANN, "/assisted/")
    helped = app.test_client()
    used = helped.post(assisted, data={"csrf_token": csrf(helped, assisted)})
    assert used.headers["Location"] == "/me"
    assert helped.get(assisted).status_code == 404

    # A help request, the agent's answer, the writer's reply on the link.
    writer = app.test_client()
    asked = writer.post(
        "/help",
        data={
            "csrf_token": csrf(writer, "/help"),
            "topic": "cannot_verify",
            "name": "Wanda Writer",
            "contact": WRITER,
            "reference": "",
            "body": "No code came.",
        },
    )
    assert asked.status_code == 302
    case = db.session.scalars(select(Case).order_by(Case.id.desc())).first()
    path = f"/staff/cases/{case.public_id}"
    agent.post(
        f"{path}/messages",
        data={"csrf_token": csrf(agent, path), "body": "Here is our answer.", "kind": "reply"},
    )
    deliver()
    help_case = _link_in(WRITER, "/help/case/")
    replied = writer.post(help_case, data={"csrf_token": csrf(writer, help_case), "body": "Thanks"})
    assert replied.headers["Location"] == help_case

    # Each link, tampered with: the refusal must not echo what was sent.
    for link in (link_path(ANN), assisted, help_case):
        assert visitor.get(link + "x").status_code == 404
    witness.close()

    delivered = _delivered(sink)
    mailed_tokens = set(TOKEN_IN_PATH.findall(delivered))
    mailed_codes = set(re.findall(r"^\s*(\d{6})\s*$", delivered, re.M))
    assert {first_code, code_sent_to(ANN)} <= mailed_codes
    secrets = {
        **{f"token {t}": t for t in witness.tokens | mailed_tokens},
        **{f"code {c}": c for c in mailed_codes},
        **{f"staff code {c}": c for c in staff_codes},
        **{f"recovery code {c}": c for c in recovery_codes},
        "customer password": CANARY_PASSWORD,
        "staff password": staff_flow.PASSWORD,
        **{f"cookie {c}": c for c in witness.cookies},
        **{f"session id {s}": s for s in witness.session_ids},
    }
    # Every flow left its secrets behind for this test to look for.
    # Mailed: the notice's link, the new link, the assisted sign-in, the help case; opened: those
    # and the set-up link.
    assert len(mailed_tokens) == 4 and mailed_tokens < witness.tokens
    assert len(witness.session_ids) >= 3 and len(staff_codes) >= 2

    logged = [r for r in caplog.records if not r.name.startswith("mail.")]  # the SMTP sink's
    assert any(r.name.startswith("sqlalchemy.engine") for r in logged)  # DEBUG really is on
    log_text = "\n".join(f"{caplog.handler.format(r)} {r.args!r}" for r in logged)
    db.session.expire_all()
    audit_text = "\n".join(
        f"{e.actor} {e.action} {e.subject_type} {e.subject_id} {e.details}"
        for e in db.session.scalars(select(AuditEvent))
    )
    outbox_text = "\n".join(
        f"{m.row.subject} {m.text} {m.html}"
        for m in map(open_message, db.session.scalars(select(OutboxMessage)))
    )
    assert "/a/" not in outbox_text  # the bodies of delivered messages are gone
    for where, text in (("log", log_text), ("audit row", audit_text), ("outbox", outbox_text)):
        found = [name for name, value in secrets.items() if value in text]
        assert not found, f"in a {where}: {found}"
    statuses = {page.status for page in witness.error_pages}
    assert {404, 422} <= statuses, statuses
    for page in witness.error_pages:
        found = [name for name, value in secrets.items() if page.shows(value)]
        assert not found, f"on a {page.status} page: {found}"


# --- the app's own log lines ---


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A fresh interpreter (nothing has configured logging) on this checkout's portal."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


APP_LOGS = """
import logging
from flask import g
from portal import create_app
app = create_app()
client = app.test_client()
refused = client.post("/start", base_url="https://portal.example.test")
print(refused.status_code, refused.headers["X-Request-ID"])
logging.getLogger("portal.example").info("outside a request")
with app.test_request_context():
    g.request_id = "0123abcd"
    try:
        raise ValueError("opened /assisted/s3cr3t-t0k3n")
    except ValueError:
        logging.getLogger("portal.example").exception("failed on /a/s3cr3t-t0k3n")
"""


@pytest.mark.slow
def test_in_production_each_line_is_one_json_object_with_time_level_and_request_id(
    database_url, tmp_path
):
    env = base_env(database_url, PORTAL_ENV="production", PORTAL_INSTANCE_PATH=str(tmp_path))
    ran = _run_python(APP_LOGS, env)
    status, request_id = ran.stdout.split()
    assert status == "400"
    lines = [json.loads(line) for line in ran.stderr.splitlines()]
    assert [(line["level"], line["logger"], line["request_id"]) for line in lines] == [
        ("WARNING", "portal.web.errors", request_id),  # the CSRF check's refusal
        ("INFO", "portal.example", "-"),
        ("ERROR", "portal.example", "0123abcd"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", x["time"]) for x in lines)
    assert lines[0]["message"].startswith("csrf refused: The CSRF token is missing.")
    assert lines[2]["message"] == "failed on /a/[token]"
    assert "ValueError: opened /assisted/[token]" in lines[2]["exception"]
    assert "s3cr3t" not in ran.stderr


@pytest.mark.slow
def test_elsewhere_lines_are_text_with_the_same_fields(database_url, tmp_path):
    env = base_env(database_url, PORTAL_ENV="development", PORTAL_INSTANCE_PATH=str(tmp_path))
    ran = _run_python(APP_LOGS, env)
    request_id = ran.stdout.split()[1]
    lines = ran.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(
        rf"{stamp} WARNING portal\.web\.errors \[{request_id}\] csrf refused: .*", lines[0]
    )
    assert re.fullmatch(rf"{stamp} INFO portal\.example \[-\] outside a request", lines[1])
    assert re.fullmatch(
        rf"{stamp} ERROR portal\.example \[0123abcd\] failed on /a/\[token\]", lines[2]
    )
    assert "ValueError: opened /assisted/[token]" in ran.stderr and "s3cr3t" not in ran.stderr


def test_records_still_reach_pytest_and_carry_the_request_id_on_the_portal_handler(app, caplog):
    import io

    from flask import g

    from portal.web.logs import handler

    stream = io.StringIO()
    ours = handler(production=True, stream=stream)
    logging.getLogger("portal").addHandler(ours)
    try:
        with app.test_request_context():
            g.request_id = "feedface"
            logging.getLogger("portal.example").info("hello %s", "/help/case/t0k3n")
    finally:
        logging.getLogger("portal").removeHandler(ours)
    assert "hello /help/case/t0k3n" in caplog.text  # caplog sees the record as it was made
    line = json.loads(stream.getvalue())
    assert (line["request_id"], line["message"]) == ("feedface", "hello /help/case/[token]")
