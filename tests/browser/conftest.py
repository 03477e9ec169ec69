"""Real-browser journeys: a live portal (threaded server, outbox worker) on loopback, a real SMTP
sink, an SMS sink, and Debian's chromium driven by Playwright. Each page a test visits is checked
for what a person would meet: axe-core violations, console errors, CSP reports, and English
interface text on a Spanish page."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from portal import ROOT, create_app
from portal.extensions import db
from tests.conftest import SMTPSink, base_env, clean_database, free_port

HERE = Path(__file__).parent
AXE = HERE / "vendor" / "axe-core-4.14.1.min.js"
REDIS_URL = os.environ.get("PORTAL_TEST_BROWSER_REDIS_URL", "redis://127.0.0.1:6379/14")
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
# One folder per run for the screenshots (instance/ is not committed).
SHOTS = ROOT / "instance" / "screenshots" / datetime.now().strftime("%Y%m%d-%H%M%S")


# --- the SMS provider: records what the portal POSTs ---


@dataclass
class SMSSink:
    texts: list[dict] = field(default_factory=list)
    token: str = "sms-test-token-0123456789"

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") == f"Bearer {sink.token}":
                    sink.texts.append(json.loads(body))
                    self.send_response(200)
                else:
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/send"


@dataclass
class Mail:
    to: str
    subject: str
    text: str


@dataclass
class Live:
    """The portal as people reach it: its origin, and what it sent by mail and by text."""

    base: str
    app: object
    smtp: SMTPSink
    sms: SMSSink

    def mails(self, to: str) -> list[Mail]:
        found = []
        for envelope in list(self.smtp.messages):
            if to.lower() not in [r.lower() for r in envelope.rcpt_tos]:
                continue
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            part = message.get_body(preferencelist=("plain",))
            found.append(Mail(to, str(message["Subject"]), part.get_content()))
        return found

    def wait_for_mail(self, to: str, subject: str, seen: int = 0, timeout: float = 20) -> Mail:
        """The first message to `to` whose subject contains `subject`, after the `seen` first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matching = [m for m in self.mails(to) if subject in m.subject]
            if len(matching) > seen:
                return matching[seen]
            time.sleep(0.1)
        raise AssertionError(
            f"no mail '{subject}' reached {to}; got {[m.subject for m in self.mails(to)]}"
        )

    def texts(self, to: str) -> list[str]:
        return [t["body"] for t in list(self.sms.texts) if t["to"] == to]

    def wait_for_text(self, to: str, seen: int = 0, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.texts(to)
            if len(texts) > seen:
                return texts[seen]
            time.sleep(0.1)
        raise AssertionError(f"no text message reached {to}")

    def run(self, fn, *args, **kwargs):
        """Run a service function in the app (an operator's command), committed."""
        with self.app.app_context():
            try:
                result = fn(*args, **kwargs)
                db.session.commit()
                return result
            finally:
                db.session.remove()


def code_in(text_: str) -> str:
    """A code message carries the code as a standalone 6-digit number."""
    match = re.search(r"(?<!\d)(\d{6})(?!\d)", text_)
    assert match, f"no code in {text_!r}"
    return match.group(1)


def link_in(text_: str, base: str) -> str:
    for line in text_.splitlines():
        if line.strip().startswith(base + "/a/"):
            return line.strip()
    raise AssertionError("no access link in the message")


def _worker(app, stopping: threading.Event) -> None:
    """`portal outbox work`, in a thread: a batch of due messages, then a job, in turns."""
    from portal.cli import _transports, work_turn

    with app.app_context():
        transports = _transports()
        try:
            while not stopping.is_set():
                try:
                    batch, job = work_turn(transports)  # a batch, then a job: one unit each
                    if batch.claimed == 0 and job is None:
                        stopping.wait(0.1)
                finally:
                    db.session.remove()
        finally:
            transports.close()


@contextlib.contextmanager
def serve_portal(migrated_database, tmp_path_factory, host: str = "127.0.0.1", **settings: str):
    """A live portal on a free loopback port with its own database, SMTP and SMS sinks; its
    origin names `host` (security keys need a host name: browsers refuse an IP address as a
    WebAuthn relying party)."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    folder = tmp_path_factory.mktemp("live")
    smtp = SMTPSink()
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    controller.start()
    sms = SMSSink()
    sms_server, sms_url = sms.serve()
    port = free_port()
    base = f"http://{host}:{port}"
    previous = os.environ.get("PORTAL_INSTANCE_PATH")
    os.environ["PORTAL_INSTANCE_PATH"] = str(folder)
    env = base_env(
        clean_database(migrated_database, folder),
        PORTAL_BASE_URL=base,
        PORTAL_SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
        PORTAL_SMS_URL=sms_url,
        PORTAL_SMS_TOKEN=sms.token,
        PORTAL_REDIS_URL=REDIS_URL,
        **settings,
    )
    app = create_app(env)
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopping = threading.Event()
    worker = threading.Thread(target=_worker, args=(app, stopping), daemon=True)
    worker.start()
    try:
        yield Live(base, app, smtp, sms)
    finally:
        stopping.set()
        worker.join(timeout=10)
        server.shutdown()
        server.server_close()
        sms_server.shutdown()
        sms_server.server_close()
        controller.stop()
        with app.app_context():
            db.engine.dispose()
        if previous is None:
            os.environ.pop("PORTAL_INSTANCE_PATH", None)
        else:
            os.environ["PORTAL_INSTANCE_PATH"] = previous


@pytest.fixture(scope="module")
def live(migrated_database, tmp_path_factory):
    """A live portal on a free loopback port with its own database, SMTP and SMS sinks."""
    with serve_portal(migrated_database, tmp_path_factory) as portal:
        yield portal


@pytest.fixture(autouse=True)
def own_instance_folder():
    """The live server keeps the instance folder it started with (overrides the suite's)."""


def _english_phrases() -> list[str]:
    """Interface sentences that have a Spanish translation: none may show on a Spanish page."""
    from babel.messages.pofile import read_po

    with (ROOT / "portal/translations/es/LC_MESSAGES/messages.po").open("rb") as handle:
        catalog = read_po(handle)
    phrases = []
    for message in catalog:
        if not message.id or not message.string or isinstance(message.id, tuple):
            continue
        for piece in re.split(r"%\(\w+\)s|<[^>]+>", message.id):
            piece = piece.strip(" .,:;·")
            # Long enough to be English prose, and not the same in both languages.
            if len(piece) >= 18 and piece not in message.string:
                phrases.append(piece)
    return phrases


ENGLISH = None


class Person:
    """One person in one browser: a Playwright page plus the checks made on every page."""

    def __init__(self, context, live: Live, name: str, language: str, js: bool):
        self.context = context
        self.page = context.new_page()
        self.live = live
        self.name = name
        self.language = language
        self.js = js
        self.problems: list[str] = []
        self.step = 0
        self.auditor = None
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on(
            "request",
            lambda r: (
                self.problems.append(f"foreign request {r.url}")
                if not r.url.startswith((live.base, "data:"))
                else None
            ),
        )

    def _console(self, message) -> None:
        # Chromium reports every 4xx answer as a console error; a 422 for a form with a mistake,
        # or a 404/410/429 page, is what the person should see, not a problem of the page.
        answered_4xx = "the server responded with a status of 4" in message.text
        if message.type == "error" and not answered_4xx:
            self.problems.append(f"console: {message.text} at {message.location}")

    def goto(self, path: str):
        self.page.goto(self.live.base + path if path.startswith("/") else path)
        self.check()
        return self.page

    def check(self, label: str = "") -> None:
        """What every page must pass: axe clean, no Spanish page with English interface text."""
        page = self.page
        page.wait_for_load_state()
        self.step += 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", (label or page.url.split("/", 3)[-1]).lower())[:40]
        page.screenshot(path=str(SHOTS / f"{self.name}-{self.step:02d}-{slug}.png"), full_page=True)
        audited = page if self.js else self._auditor()
        audited.evaluate(AXE.read_text())
        result = audited.evaluate(
            "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
            # Minor findings too where they are a blank a screen reader reads out: an empty
            # column header is announced as nothing before every cell of its column.
            " return r.violations.filter(v => ['serious', 'critical'].includes(v.impact)"
            " || v.id === 'empty-table-header')"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')); }"
        )
        assert result == [], f"axe on {page.url}: {result}"
        # The header's controls (sign-out, the staff menu) sit on its band: white text that
        # slipped below it would be white on the white page.
        astray = page.evaluate(
            "() => { const h = document.querySelector('header.site'); if (!h) return [];"
            " const band = h.getBoundingClientRect();"
            " return [...h.querySelectorAll('a, button')].filter(e => {"
            " const b = e.getBoundingClientRect();"
            " return b.width && (b.top < band.top - 1 || b.bottom > band.bottom + 1); })"
            ".map(e => e.textContent.trim()); }"
        )
        assert astray == [], f"{page.url}: {astray} outside the header"
        wide = page.evaluate("document.documentElement.scrollWidth")
        viewport = page.viewport_size["width"]
        assert wide <= viewport, f"{page.url} is {wide}px wide on a {viewport}px screen"
        if self.language == "es":
            global ENGLISH
            ENGLISH = ENGLISH or _english_phrases()
            shown = page.evaluate(
                "() => { const copy = document.body.cloneNode(true);"
                " copy.querySelectorAll('[lang]:not([lang^=es])').forEach(e => e.remove());"
                " copy.querySelectorAll('script, style').forEach(e => e.remove());"
                " return copy.textContent.replace(/\\s+/g, ' '); }"
            )
            english = [p for p in ENGLISH if p in shown]
            assert english == [], f"English on the Spanish page {page.url}: {english[:5]}"
        assert self.problems == [], f"{page.url}: {self.problems}"

    def _auditor(self):
        """axe needs timers, which a page without JavaScript does not run: audit the same HTML,
        scripts removed, in a JavaScript page of the same size and origin."""
        html = re.sub(r"<script\b[^>]*>.*?</script>", "", self.page.content(), flags=re.S)
        if self.auditor is None:
            context = self.context.browser.new_context(viewport=self.page.viewport_size)
            self.auditor = context.new_page()
        self.auditor.unroute("**/__audit__")
        self.auditor.route(
            "**/__audit__", lambda route: route.fulfill(body=html, content_type="text/html")
        )
        self.auditor.goto(self.live.base + "/__audit__")
        return self.auditor

    def click(self, role: str, name: str, **kwargs):
        self.page.get_by_role(role, name=name, **kwargs).click()
        self.page.wait_for_load_state()
        return self.page

    def submit(self, name: str):
        """Press a form's button and wait until its answer is on screen (a page load, or an
        htmx swap settled): what a person waits for before reading."""
        page = self.page
        with page.expect_response(lambda r: r.request.method == "POST"):
            page.get_by_role("button", name=name).click()
        page.wait_for_load_state()
        if self.js:
            self.wait_until(
                "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
            )
        return page

    def wait_until(self, expression: str, timeout: float = 10) -> None:
        """Poll a JavaScript condition from outside the page (Playwright's own wait_for_function
        evaluates strings inside it, which the portal's CSP rightly refuses)."""
        deadline = time.monotonic() + timeout
        while not self.page.evaluate(expression):
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.05)

    def close(self):
        if self.auditor is not None:
            self.auditor.context.close()
        self.context.close()


@pytest.fixture
def person(chromium, live, request):
    """Make a person: person(language='en', js=True, phone=False)."""
    made = []

    def make(language: str = "en", js: bool = True, phone: bool = False, name: str = ""):
        context = chromium.new_context(
            java_script_enabled=js,
            viewport=PHONE if phone else DESKTOP,
            locale={"en": "en-US", "es": "es-US"}[language],
            timezone_id="America/Los_Angeles",
        )
        context.set_default_timeout(10_000)
        label = name or re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60]
        someone = Person(context, live, label, language, js)
        made.append(someone)
        return someone

    yield make
    for someone in made:
        with contextlib.suppress(Exception):
            someone.close()


def pytest_collection_modifyitems(items):
    """The live server is werkzeug's development server in a thread: when a browser drops a
    request for a static file (it often gives up on the favicon as a page moves on), the file's
    handle is left to the garbage collector, whose ResourceWarning would fail whichever test
    happens to be running. Not a fault of the portal's (gunicorn closes it), so not an error
    here; every other unraisable exception still is."""
    for item in items:
        if "/browser/" in str(item.fspath):
            item.add_marker(
                pytest.mark.filterwarnings(
                    r"ignore:Exception ignored in. <_io\.FileIO name='.*/static/"
                    r":pytest.PytestUnraisableExceptionWarning"
                )
            )


@pytest.fixture(autouse=True)
def fresh_browser_rate_limits():
    """Each browser test starts with no rate-limit counts left by the tests before it: they share
    a module's live server and its Redis, and every one of them comes from 127.0.0.1, so a test
    late in a module could meet a per-network limit the earlier ones used up (as CI saw)."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
