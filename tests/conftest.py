"""Fixtures: an app on a freshly migrated database per test, a CLI runner, a real SMTP server."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text

from portal import ROOT, create_app
from portal import clock as portal_clock
from portal.config import new_data_key
from portal.extensions import db
from portal.models import Incident, OutboxMessage
from portal.models.base import Base
from portal.services.incidents import create_incident
from portal.services.outbox import open_message

PG_URL = os.environ.get("PORTAL_TEST_DATABASE_URL")
BASE_URL = "https://portal.example.test"
SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
DATA_KEY = new_data_key()
AUDIT_KEY = new_data_key()
# Every table the models declare, children first; alembic's own bookkeeping is not one of them.
TABLES = tuple(table.name for table in reversed(Base.metadata.sorted_tables))
REDIS_URL = os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pg_url() -> str | None:
    if PG_URL and PG_URL.startswith("postgresql://"):
        return "postgresql+psycopg://" + PG_URL.removeprefix("postgresql://")
    return PG_URL


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        "PORTAL_ENV": "testing",
        "PORTAL_SECRET_KEY": SECRET_KEY,
        "PORTAL_BASE_URL": BASE_URL,
        "PORTAL_DATA_KEYS": DATA_KEY,
        "PORTAL_AUDIT_KEYS": AUDIT_KEY,
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_MAIL_FROM": "notices@example.test",
        "PORTAL_REDIS_URL": REDIS_URL,
        # Staff share the tests' one host unless a test gives them their own (test_staff_host.py);
        # production would refuse to start without one or the other.
        "PORTAL_STAFF_SAME_HOST": "1",
    }
    env.update(extra)
    return env


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(base_env(url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> str:
    """A migrated database for the session: SQLite template file, or the PostgreSQL test db."""
    if pg_url():
        engine = create_engine(pg_url())
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _migrate(pg_url())
        return pg_url()
    template = tmp_path_factory.mktemp("db") / "template.db"
    _migrate(f"sqlite:///{template}")
    return str(template)


def clean_database(migrated_database: str, folder) -> str:
    """Empty the PostgreSQL test database, or copy the migrated SQLite template into folder."""
    if pg_url():
        engine = create_engine(pg_url())
        with engine.begin() as conn:
            # The audit table refuses TRUNCATE by trigger; the test set-up, as superuser, skips
            # ordinary triggers for this one transaction.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return pg_url()
    path = folder / "portal.db"
    shutil.copy(migrated_database, path)
    return f"sqlite:///{path}"


@pytest.fixture
def database_url(migrated_database, tmp_path) -> str:
    """A clean, migrated database for one test."""
    return clean_database(migrated_database, tmp_path)


@pytest.fixture(autouse=True)
def own_instance_folder(tmp_path, monkeypatch):
    """Each test keeps its instance files (uploads, development keys) to itself."""
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(folder))


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Each test starts with no rate-limit history (a real Redis, its own database number)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
def env(database_url) -> dict[str, str]:
    return base_env(database_url)


class BrowserClient(FlaskClient):
    """A test client that sends a same-origin Referer with every POST, as browsers do (the
    CSRF check on HTTPS requires one)."""

    def open(self, *args, **kwargs):
        request_method = kwargs.get("method", "GET")
        if request_method == "POST":
            base = kwargs.get("base_url") or "https://localhost"
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Referer", base.rstrip("/") + "/")
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


@pytest.fixture
def app(env):
    app = create_app(env)
    app.test_client_class = BrowserClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_app():
    """create_app for tests that need their own app; its connections are closed afterwards."""
    made = []

    def make(env):
        app = create_app(env)
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


class Clock:
    """The portal's clock as a test moves it: real time plus the offset the test has moved it
    by. Services, views, signed links and authenticator codes all read it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return portal_clock.system_time() + self.offset

    def move(self, delta: timedelta) -> None:
        self.offset += delta

    def tick(self, seconds: int = 30) -> None:
        """Wait this long; 30 s is an authenticator app's next code."""
        self.move(timedelta(seconds=seconds))

    def move_to(self, when: datetime) -> None:
        self.offset = when - portal_clock.system_time()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The one seam for time: the portal reads portal.clock.now(), and this test moves it."""
    moved = Clock()
    monkeypatch.setattr(portal_clock, "source", moved.now)
    return moved


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# The incident most tests are about (the browser journeys' too).
INCIDENT = {
    "slug": "acme-2026",
    "title": "Unauthorized access to customer records",
    "discovered_on": date(2026, 10, 9),
    "occurred_on": date(2026, 10, 2),
    "what_happened": "Someone copied part of our customer database.",
    "what_we_are_doing": "We closed the access and hired investigators.",
    "contact_phone": "1-800-555-0199",
    "contact_hours": "Monday to Friday, 8 am to 8 pm",
}


@pytest.fixture
def incident(app) -> Incident:
    return create_incident(**INCIDENT, actor="test")


@pytest.fixture
def outbox(app):
    """Read the outbox: a callable returning every message, opened."""

    def read():
        db.session.expire_all()
        rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [open_message(row) for row in rows]

    return read


HEADER = ["external_id", "full_name", "email", "phone", "locale", "region", "data_classes"]


@pytest.fixture
def write_csv(tmp_path):
    """Write rows (lists or dicts) under the standard header; return the path."""
    counter = iter(range(1000))

    def write(rows, header=HEADER, name=None, encoding="utf-8"):
        path = tmp_path / (name or f"customers-{next(counter)}.csv")
        with path.open("w", newline="", encoding=encoding) as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([row.get(h, "") for h in header] if isinstance(row, dict) else row)
        return path

    return write


def customer_row(n: int, **overrides) -> dict:
    row = {
        "external_id": f"C-{n:05d}",
        "full_name": f"Person Number{n}",
        "email": f"person{n}@example.com",
        "phone": f"+1415555{n:04d}",
        "locale": "en",
        "region": "US-CA",
        "data_classes": "email_address;payment_card:4242;ssn:6789",
    }
    row.update(overrides)
    return row


# --- a real SMTP server on loopback ---


@dataclass
class SMTPSink:
    """Records what it accepts; can refuse chosen recipients with a chosen reply."""

    messages: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # Offer PIPELINING, as the relays the portal sends to do (the transport then sends MAIL, RCPT
    # and DATA in one write); False: a server without it (one command, one reply).
    pipelining: bool = True
    refuse_sender: str = ""  # a reply to MAIL FROM instead of 250 (e.g. "550 5.7.1 not you")
    greetings: int = 0  # EHLOs seen: one a connection

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.greetings += 1
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(envelope)
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        import email

        return [email.message_from_bytes(e.content)["Message-ID"] for e in self.messages]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """Start an aiosmtpd server on a free loopback port; yield (sink, controller)."""
    sink = SMTPSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller
    with contextlib.suppress(AssertionError, RuntimeError):  # already stopped by the test
        controller.stop()


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, driven by Playwright (never a browser a test tool downloads)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Without the background-networking flags chromium keeps dialling out of a closed
            # network; without the sandbox it runs as root in CI.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
