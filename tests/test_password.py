"""A safe new password: NIST rules, argon2id, every other session ended, everyone told."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.mail.webhook import SIGNATURE_HEADER, WebhookTransport
from portal.models import AuditEvent, Customer, OutboxMessage
from portal.services import passwords
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.services.outbox import Transports, drain, open_message
from tests.conftest import customer_row
from tests.customer_flow import code_sent_to, csrf_from, messages_to, sign_in, submit_code

ANN = "ann.smith@example.com"
GOOD = "correct horse battery staple"
WEBHOOK_SECRET = "webhook-secret-0123456789-abcdefghijklmnop"


@pytest.fixture
def signed_in(client, incident, write_csv):
    row = customer_row(
        1, full_name="Ann Smith", email=ANN, phone="", data_classes="password;email_address"
    )
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    sign_in(client, ANN)
    return client


def customer() -> Customer:
    db.session.expire_all()
    return db.session.scalars(select(Customer)).one()


def change(client, password: str, confirm: str | None = None):
    token = csrf_from(client.get("/me/password"))
    return client.post(
        "/me/password",
        data={
            "csrf_token": token,
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("fourteen chars", "at least 15"),
        ("Password123456789", "common passwords"),
        ("1qaz2wsx3edc4rfv", "common passwords"),
        ("!!!!trustno1!!!!!!", "common passwords"),
        ("ExampleCorp2025!!!!!", "guess about you"),
        ("Example Corp 2026 !!!", "guess about you"),
        ("ann.smith0000000000", "guess about you"),
        ("AnnSmith!!!!!!!!!!!!", "guess about you"),
        ("Unauthorized123456789", "guess about you"),
        ("x" * 257, "at most 256"),
        ("aaaaaaaaaaaaaaaaaaaa", "too few characters"),
    ],
)
def test_unsafe_passwords_are_refused_with_a_reason(signed_in, password, reason):
    response = change(signed_in, password)
    assert response.status_code == 422
    assert reason in response.get_data(as_text=True)
    assert customer().password_hash is None


def test_confirmation_must_match(signed_in):
    response = change(signed_in, GOOD, GOOD + "!")
    assert b"not the same" in response.data


@pytest.mark.parametrize(
    "password",
    [
        "🦊 quiet rivers fold paper 🌙",  # emoji and spaces
        "Ä" + "ß" * 14 + " café crème",  # any script, never case-folded
        "the quick brown fox jumps over the lazy dog while it rains in Spain",  # 67
        "r" * 250 + "abcdef",  # exactly 256
    ],
)
def test_long_unicode_passphrases_are_accepted_and_verifiable(signed_in, password):
    response = change(signed_in, password)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    c = customer()
    assert c.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(c, password)
    assert not passwords.verify(c, password[:-1])  # never truncated
    assert not passwords.verify(c, password.swapcase())  # never case-folded


def test_nfc_and_nfd_forms_are_the_same_password(signed_in):
    composed = "café sous les étoiles"
    decomposed = "cafe\u0301 sous les e\u0301toiles"
    change(signed_in, composed)
    assert passwords.verify(customer(), decomposed)


def test_the_previous_password_is_refused(signed_in):
    assert change(signed_in, GOOD).status_code == 302
    response = change(signed_in, GOOD)
    assert b"current password" in response.data


def test_parameters_changed_means_rehash_on_next_verify(signed_in, app):
    app.config["ARGON2_TIME_COST"] = 1
    change(signed_in, GOOD)
    old = customer().password_hash
    app.config["ARGON2_TIME_COST"] = 2
    c = customer()
    assert passwords.verify(c, GOOD)
    assert c.password_hash != old and "t=2" in c.password_hash


def test_reset_needs_a_fresh_code_first_then_completes(signed_in, clock):
    clock.move(timedelta(minutes=11))
    page = signed_in.get("/me/password")
    assert b"first confirm it is you" in page.data
    assert b'name="password"' not in page.data
    started = signed_in.post(
        "/me/confirm", data={"csrf_token": csrf_from(page), "next": "/me/password"}
    )
    assert started.headers["Location"] == "/verify"
    assert submit_code(signed_in, code_sent_to(ANN)).headers["Location"] == "/me/password"
    assert change(signed_in, GOOD).status_code == 302


def test_a_reset_ends_other_sessions_and_tells_everyone(signed_in, app):
    app.config["WEBHOOK_URL"] = "https://hooks.example.test/portal"
    app.config["WEBHOOK_SECRET"] = WEBHOOK_SECRET
    second = app.test_client()
    sign_in(second, ANN)
    before = signed_in.get_cookie("portal").value

    response = change(signed_in, GOOD)

    assert response.headers["Location"] == "/me"
    assert signed_in.get("/me").status_code == 200  # this browser goes on, in a new session
    assert signed_in.get_cookie("portal").value != before
    assert second.get("/me").headers["Location"] == "/signed-out"
    mail = [m for m in messages_to(ANN) if "change to your account" in m.row.subject]
    assert len(mail) == 1 and "password of your account was changed" in mail[0].text
    assert "If this was not you" in mail[0].text
    hook = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook")).one()
    body = open_message(hook).text
    event = json.loads(body)
    assert event["type"] == "customer.password_changed"
    assert event["data"]["customer"] == "C-00001"
    c = customer()
    for message in (body, mail[0].text, mail[0].html):
        assert GOOD not in message and c.password_hash not in message
    assert "customer.password_changed" in db.session.scalars(select(AuditEvent.action)).all()


class Receiver(BaseHTTPRequestHandler):
    """The organisation's webhook endpoint, checking signatures as its docs would say to."""

    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, self.headers[SIGNATURE_HEADER] or "")
        Receiver.received.append((valid, json.loads(body)))
        self.send_response(204 if valid else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(handler) -> tuple[HTTPServer, str]:
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def test_the_webhook_is_delivered_with_a_valid_signature(signed_in, app):
    Receiver.received = []
    server, url = serve(Receiver)
    try:
        app.config["WEBHOOK_URL"] = url + "/events"
        app.config["WEBHOOK_SECRET"] = WEBHOOK_SECRET
        change(signed_in, GOOD)
        result = drain(Transports(webhook=WebhookTransport(WEBHOOK_SECRET)))
    finally:
        server.shutdown()
        server.server_close()
    assert result.sent == 1
    ((valid, event),) = Receiver.received
    assert valid and event["type"] == "customer.password_changed"


def test_an_unreachable_webhook_waits_like_mail_without_counting_a_try(signed_in, app):
    app.config["WEBHOOK_URL"] = "http://127.0.0.1:9/closed"
    app.config["WEBHOOK_SECRET"] = WEBHOOK_SECRET
    change(signed_in, GOOD)
    result = drain(Transports(webhook=WebhookTransport(WEBHOOK_SECRET, timeout=2)))
    hook = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook")).one()
    assert "webhook" in result.unreachable
    assert (hook.status, hook.attempts) == ("queued", 0)


# --- Pwned Passwords, against a local range server ---

LISTED = "a perfectly ordinary but leaked passphrase"


class RangeServer(BaseHTTPRequestHandler):
    requests: list = []
    answered: list = []
    hold: threading.Event | None = None  # when set up, the service hangs until it is released

    def do_GET(self):
        RangeServer.requests.append((self.path, self.headers.get("Add-Padding")))
        if RangeServer.hold is not None:
            RangeServer.hold.wait(timeout=30)
        digest = hashlib.sha1(LISTED.encode()).hexdigest().upper()
        lines = [f"{'0' * 35}:0", f"{'F' * 35}:0"]  # padding, to be ignored
        if self.path.endswith("/" + digest[:5]):
            lines.append(f"{digest[5:]}:42")
        # A padding line for the unlisted password's own suffix: count 0 means "not pwned".
        unlisted = hashlib.sha1(GOOD.encode()).hexdigest().upper()
        if self.path.endswith("/" + unlisted[:5]):
            lines.append(f"{unlisted[5:]}:0")
        body = "\r\n".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        RangeServer.answered.append(self.path)

    def log_message(self, *args):
        pass


@pytest.fixture
def pwned(app):
    RangeServer.requests, RangeServer.answered, RangeServer.hold = [], [], None
    server, url = serve(RangeServer)
    app.config["PWNED_PASSWORDS_URL"] = url + "/range"
    yield RangeServer
    if RangeServer.hold is not None:
        RangeServer.hold.set()
    server.shutdown()
    server.server_close()


def test_a_listed_password_is_refused_and_only_a_prefix_leaves(signed_in, pwned):
    response = change(signed_in, LISTED)
    assert b"appeared in a data breach elsewhere" in response.data
    ((path, padding),) = pwned.requests
    assert path == "/range/" + hashlib.sha1(LISTED.encode()).hexdigest().upper()[:5]
    assert padding == "true"


def test_padding_lines_do_not_count(signed_in, pwned):
    assert change(signed_in, GOOD).status_code == 302


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "accepted"), [("accept", True), ("reject", False)])
def test_a_hanging_service_follows_the_policy(signed_in, pwned, app, policy, accepted):
    pwned.hold = threading.Event()  # it would answer after 30 s, long past the 2-second timeout
    app.config["PWNED_UNREACHABLE_POLICY"] = policy
    response = change(signed_in, GOOD)
    assert pwned.requests and pwned.answered == []  # the portal stopped waiting and answered
    assert (response.status_code == 302) is accepted


def test_the_password_page_helps_password_managers(signed_in):
    page = signed_in.get("/me/password").get_data(as_text=True)
    assert page.count('autocomplete="new-password"') == 2
    assert page.count('type="password"') == 2
    assert "maxlength" not in page  # a pasted long password is never cut short
    assert "data-show-passwords" in page


def test_the_shipped_common_password_list():
    common = passwords.common_passwords()
    assert len(common) >= 10_000
    assert "password" in common and "123456" in common
    assert (passwords.COMMON_PASSWORDS.parent / "common-passwords.LICENSE").exists()


# --- the second penetration test: a password made only of guessable words (AUTH-03) ---


@pytest.fixture
def ann_smith(client, incident, write_csv):
    row = customer_row(1, full_name="Ann Smith", email=ANN, phone="", data_classes="password")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    sign_in(client, ANN)
    return client


@pytest.mark.parametrize(
    "password",
    [
        "Example Corp breach",  # the organisation's name and the word "breach", nothing else
        "breach portal 2026!",
        "ann smith example corp",  # her own name and ours
    ],
)
def test_a_password_built_only_from_guessable_words_is_refused(ann_smith, password):
    """POST /me/password with "Example Corp breach" was set (302): the rule took out one
    guessable word at a time, so two of them together passed."""
    page = ann_smith.get("/me/password")
    response = ann_smith.post(
        "/me/password",
        data={"csrf_token": csrf_from(page), "password": password, "confirm": password},
    )
    assert response.status_code == 422, response.headers.get("Location")
    assert "guess about you" in response.get_data(as_text=True)


def test_guessable_words_beside_unrelated_ones_are_still_a_good_password(ann_smith):
    password = "example corp kettle marmalade cyclone"
    page = ann_smith.get("/me/password")
    response = ann_smith.post(
        "/me/password",
        data={"csrf_token": csrf_from(page), "password": password, "confirm": password},
    )
    assert response.status_code == 302
