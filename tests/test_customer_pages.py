"""The letter code, texts by SMS, CSRF everywhere, headers everywhere, a bounded dashboard."""

from __future__ import annotations

import json
import re
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from limits import parse
from sqlalchemy import event, select

from portal import clock as portal_clock
from portal.extensions import db
from portal.mail.sms import SMSTransport
from portal.models import DATA_CLASSES, AuditEvent, Challenge, IncidentUpdate, Notice
from portal.services import reference_codes
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.services.outbox import Transports, drain
from portal.web import limits
from tests.conftest import customer_row
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    messages_to,
    sign_in,
    start_from_link,
    submit_code,
)

ANN = "ann@example.com"


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [customer_row(1, email=ANN, phone="", data_classes="ssn:1234;full_name")]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    return db.session.scalars(select(Notice)).one()


# --- acceptance 7: the letter's reference code ---


def _start_with(client, typed: str):
    token = csrf_from(client.get("/start"))
    return client.post("/start", data={"csrf_token": token, "reference": typed})


def test_reference_code_path_end_to_end(client, notified):
    typed = reference_codes.display(notified.reference_code).lower().replace("-", " ")
    response = _start_with(client, f"  {typed} ")
    assert response.headers["Location"] == "/verify"
    assert submit_code(client, code_sent_to(ANN)).headers["Location"] == "/me"
    assert b"Social Security number (ending 1234)" in client.get("/me").data


def test_mistyped_reference_code_is_explained_and_counts_against_nobody(client, notified):
    code = notified.reference_code
    typo = code[:3] + ("2" if code[3] != "2" else "3") + code[4:]
    response = _start_with(client, typo)
    assert response.status_code == 200
    assert b"does not look right" in response.data
    assert db.session.scalars(select(Challenge)).all() == []
    assert b"ABCD-EFGH-JKMN" in response.data


def test_unknown_reference_code(client, notified):
    body = "23456789ABC"
    response = _start_with(client, body + reference_codes.check_character(body))
    assert b"could not find that reference code" in response.data
    assert db.session.scalars(select(Challenge)).all() == []


def _unknown_code(n: int) -> str:
    alphabet = reference_codes.ALPHABET
    body = "".join(alphabet[(n // len(alphabet) ** k) % len(alphabet)] for k in range(11))
    return body + reference_codes.check_character(body)


def test_guessing_reference_codes_from_one_address_is_rate_limited(client, notified):
    # High enough for a shared address on notice day: guessing stays hopeless at that pace.
    allowed = parse(limits.START_PER_NETWORK).amount
    token = csrf_from(client.get("/start"))
    statuses = [
        client.post("/start", data={"csrf_token": token, "reference": _unknown_code(n)}).status_code
        for n in range(allowed + 1)
    ]
    assert statuses[:allowed] == [200] * allowed
    assert statuses[allowed] == 429


# --- texts by SMS ---


class SMSProvider(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        SMSProvider.received.append(
            (self.headers["Authorization"], json.loads(self.rfile.read(length)))
        )
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass  # keep test output quiet (and never log a message body)


@pytest.fixture
def sms_provider():
    SMSProvider.received = []
    server = HTTPServer(("127.0.0.1", 0), SMSProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/messages", SMSProvider.received
    server.shutdown()
    server.server_close()


def test_a_customer_with_a_phone_gets_the_code_by_text(
    client, app, incident, write_csv, sms_provider
):
    url, received = sms_provider
    app.config["SMS_URL"] = url
    import_customers(
        incident,
        write_csv([customer_row(7, email="pat@example.com", phone="+14155550177")]),
        actor="test",
    )
    queue_notices(incident, actor="test")
    page = client.get(link_path("pat@example.com"))
    assert b"by text message to the phone number ending in 77" in page.data
    client.post(link_path("pat@example.com"), data={"csrf_token": csrf_from(page)})

    drain(Transports(sms=SMSTransport(url, "provider-token")))

    ((authorization, payload),) = received
    assert authorization == "Bearer provider-token"
    assert payload["to"] == "+14155550177"
    code = re.search(r"\b(\d{6})\b", payload["body"]).group(1)
    assert payload["body"].endswith(f"@portal.example.test #{code}")
    assert submit_code(client, code).headers["Location"] == "/me"


def test_sms_provider_failures_retry_or_fail(app, sms_provider):
    from portal.mail.smtp import DeliveryError

    transport = SMSTransport("http://127.0.0.1:9/unreachable", "t", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        transport.send("+14155550100", "hello")
    assert not caught.value.permanent and caught.value.connection


# --- acceptance 5: CSRF and headers everywhere ---


def _concrete(rule) -> str:
    return re.sub(r"<[^>]+>", "x", re.sub(r"<int:[^>]+>", "1", rule.rule))


def test_every_post_without_a_csrf_token_is_refused(client, app, notified):
    sign_in(client, ANN)
    # The one exemption, on purpose: browsers post CSP reports without a token (it only counts;
    # tests/test_web_security.py covers it).
    posts = [
        r
        for r in app.url_map.iter_rules()
        if "POST" in r.methods and r.endpoint != "public.csp_report"
    ]
    assert len(posts) >= 6
    for rule in posts:
        response = client.post(_concrete(rule), data={"code": "123456", "email": ANN})
        assert response.status_code == 400, rule.rule
        wrong = client.post(_concrete(rule), data={"csrf_token": "forged"})
        assert wrong.status_code == 400, rule.rule
    assert client.get("/me").status_code == 200  # nothing was done: still signed in


def test_security_headers_on_every_page(client, app, notified):
    pages = [
        "/",
        "/start",
        "/link/new",
        "/link/sent",
        "/locked",
        "/signed-out",
        link_path(ANN),
        "/a/broken",
        "/no-such-page",
    ]
    start_from_link(client, link_path(ANN))
    pages.append("/verify")
    nonces = set()
    for path in pages:
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
        nonces.add(nonce)
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", path
        assert response.headers["Cache-Control"] == "no-store", path
        assert "Strict-Transport-Security" in response.headers, path
        if response.mimetype == "text/html" and response.status_code == 200:
            page = response.get_data(as_text=True)
            assert f'nonce="{nonce}"' in page, path
            assert re.search(r"/static/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js", page)
            assert not re.search(r'src="(https?:)?//', page), path  # no script from elsewhere
    assert len(nonces) == len(pages)


def test_htmx_is_vendored_and_configured_safely(client):
    page = client.get("/").get_data(as_text=True)
    config = json.loads(re.search(r"name=\"htmx-config\" content='([^']+)'", page).group(1))
    assert config["allowEval"] is False and config["allowScriptTags"] is False
    assert config["selfRequestsOnly"] is True and config["includeIndicatorStyles"] is False
    script = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert script.status_code == 200
    script.close()
    assert "X-CSRFToken" in page


# --- acceptance 6: the dashboard costs a fixed number of queries ---


def _queries_for_dashboard(client, address: str) -> int:
    sign_in(client, address)
    client.get("/me")  # once to settle the session's last-seen write
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = client.get("/me")
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 200
    return len(statements)


def test_dashboard_query_count_does_not_grow(app, incident, write_csv):
    keys = list(DATA_CLASSES)
    incidents = [incident] + [
        create_incident(
            slug=f"more-{n}", title=f"Incident {n}", discovered_on=date(2026, 9, n), actor="test"
        )
        for n in (1, 2)
    ]
    small = [customer_row(1, email="small@example.com", phone="", data_classes="email_address")]
    import_customers(incident, write_csv(small), actor="test")
    plan = [keys, keys, keys[:4]]  # 18 + 18 + 4 = 40 exposures across 3 incidents
    for target, classes in zip(incidents, plan, strict=True):
        row = customer_row(
            2,
            email="big@example.com",
            phone="",
            data_classes=";".join(
                f"{k}:12" if DATA_CLASSES[k].fragment_label else k for k in classes
            ),
        )
        import_customers(target, write_csv([row]), actor="test")
        queue_notices(target, actor="test")
        for n in range(7 if target is not incidents[-1] else 6):
            db.session.add(
                IncidentUpdate(
                    incident_id=target.id,
                    title=f"Update {n}",
                    body="Details.",
                    published_at=portal_clock.now() - timedelta(days=n),
                )
            )
    db.session.commit()

    small_count = _queries_for_dashboard(app.test_client(), "small@example.com")
    big_client = app.test_client()
    big_count = _queries_for_dashboard(big_client, "big@example.com")
    page = big_client.get("/me").get_data(as_text=True)

    assert page.count("Update 0") == 3 and page.count('class="update"') == 20
    assert page.count("<article") == 3
    assert small_count == big_count


def test_updates_show_newest_first_and_drafts_never(client, notified, incident):
    now = portal_clock.now()
    db.session.add_all(
        [
            IncidentUpdate(
                incident_id=incident.id,
                title="Older news",
                body="a",
                published_at=now - timedelta(days=2),
            ),
            IncidentUpdate(
                incident_id=incident.id,
                title="Newer news",
                body="b",
                published_at=now - timedelta(days=1),
            ),
            IncidentUpdate(incident_id=incident.id, title="Secret draft", body="c"),
        ]
    )
    db.session.commit()
    page = sign_in(client, ANN).get_data(as_text=True)
    assert page.index("Newer news") < page.index("Older news")
    assert "Secret draft" not in page


def test_customer_pages_need_a_session(client, app):
    customer_rules = [
        r
        for r in app.url_map.iter_rules()
        if getattr(app.view_functions[r.endpoint], "access", "") == "customer"
        and "GET" in r.methods
    ]
    assert customer_rules
    for rule in customer_rules:
        assert client.get(_concrete(rule)).headers["Location"] == "/signed-out"


# --- audit holds no secrets ---


def test_audit_events_hold_no_code_token_or_contact(client, notified):
    path = link_path(ANN)
    sign_in(client, ANN)
    six = code_sent_to(ANN)
    token = path.removeprefix("/a/")
    for event_ in db.session.scalars(select(AuditEvent)):
        text = " ".join([event_.actor, event_.subject_id, event_.details])
        for secret in (six, token, ANN, "ann@", notified.reference_code):
            assert secret not in text, (event_.action, secret)


def test_a_spanish_speaker_reads_their_page_in_spanish(client, incident, write_csv):
    row = customer_row(5, email="lucia@example.com", phone="", locale="es", data_classes="ssn:4321")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    start_from_link(client, link_path("lucia@example.com"))
    code_mail = [m for m in messages_to("lucia@example.com") if m.row.kind == "email"][-1]
    assert code_mail.row.subject == "Su código de verificación de Example Corp"
    assert submit_code(client, code_sent_to("lucia@example.com")).headers["Location"] == "/me"
    page = client.get("/me").get_data(as_text=True)
    assert "Su página personal" in page and "Qué ocurrió" in page
    assert "Número de Seguro Social (que termina en 4321)" in page
    assert '<html lang="es">' in page


def test_the_link_page_speaks_the_customers_language_and_can_switch(client, incident, write_csv):
    row = customer_row(6, email="rosa@example.com", phone="", locale="es")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    path = link_path("rosa@example.com")
    page = client.get(path)
    assert "Envíenme el código".encode() in page.data
    switched = client.post(
        "/language", data={"csrf_token": csrf_from(page), "lang": "en", "next": path}
    )
    assert switched.headers["Location"] == path
    assert b"Send me the code" in client.get(path).data
    away = client.post(
        "/language",
        data={"csrf_token": csrf_from(page), "lang": "es", "next": "https://evil.test/"},
    )
    assert away.headers["Location"] == "/"


# --- a way out from every signed-in page ---


def test_every_signed_in_customer_page_offers_to_sign_out(app, client, notified):
    from portal.web.access import CUSTOMER, access_of

    sign_in(client, ANN)
    pages = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods
        and not rule.arguments
        and access_of(app.view_functions[rule.endpoint]) == CUSTOMER
    ]
    assert "/me/plan" in pages and "/me/cases" in pages
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        assert re.search(
            rb'<form method="post" action="/logout"[^>]*>(?:(?!</form>).)*'
            rb'name="csrf_token"(?:(?!</form>).)*>Sign out</button>',
            page.data,
            re.S,
        ), f"no way to sign out on {path}"
    assert b"Sign out" not in client.get("/signed-out").data
