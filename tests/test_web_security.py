"""Start-up checks, deny-by-default routing, response headers, and the development mailbox."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portal import create_app
from portal.config import ConfigError
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from portal.web.access import access_of
from tests.conftest import base_env, customer_row

PUBLIC_ROUTES = {
    "public.index",
    "public.health",
    "public.ready",  # the readiness check: which part is down, nothing more
    "static",
    # the way in, for people who are not signed in yet
    "customer.link",
    "customer.start",
    "customer.verify",
    "customer.resend",
    "customer.start_again",
    "customer.new_link",
    "customer.new_link_sent",
    "customer.locked",
    "customer.signed_out",
    "customer.signin",
    "customer.language",
    "customer.help_request",
    "customer.help_sent",
    "customer.help_case",
    "customer.assisted",
    "customer.contact_confirm",
    "customer.contact_not_me",
    "staff.setup",
    "staff.login",
    "public.incident",
    # "Is this genuine?": anyone with a message, a link or a letter in hand may check it.
    "public.genuine_check",
    "public.csp_report",  # browsers post CSP reports from any page, signed in or not
}


@pytest.mark.parametrize(
    "missing", ["PORTAL_SECRET_KEY", "PORTAL_BASE_URL", "PORTAL_DATA_KEYS", "PORTAL_AUDIT_KEYS"]
)
def test_production_refuses_to_start_without_a_required_variable(missing, database_url):
    env = base_env(database_url, PORTAL_ENV="production")
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        create_app(env)


def test_production_refuses_to_start_without_a_staff_host_unless_staff_share_one_on_purpose(
    database_url, make_app
):
    env = base_env(database_url, PORTAL_ENV="production")
    del env["PORTAL_STAFF_SAME_HOST"]
    with pytest.raises(ConfigError, match=r"PORTAL_STAFF_BASE_URL.*PORTAL_STAFF_SAME_HOST=1"):
        create_app(env)
    shared = make_app({**env, "PORTAL_STAFF_SAME_HOST": "1"})
    assert shared.config["TRUSTED_HOSTS"] == ["portal.example.test"]
    assert shared.config["STAFF_HOST"] is None
    own = make_app({**env, "PORTAL_STAFF_BASE_URL": "https://staff.example.test"})
    assert own.config["TRUSTED_HOSTS"] == ["portal.example.test", "staff.example.test"]


def test_production_serves_the_public_and_the_staff_host_and_no_other(database_url, make_app):
    env = base_env(database_url, PORTAL_ENV="production")
    del env["PORTAL_STAFF_SAME_HOST"]
    app = make_app({**env, "PORTAL_STAFF_BASE_URL": "https://staff.example.test"})
    client = app.test_client()
    assert client.get("/", base_url="https://portal.example.test").status_code == 200
    assert client.get("/staff/login", base_url="https://staff.example.test").status_code == 200
    assert client.get("/staff/login", base_url="https://evil.test").status_code == 400


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://staff.example.test", "https"),
        ("https://staff.example.test/admin", "origin"),
        ("staff.example.test", "origin"),
        ("https://portal.example.test:8443", "another host"),
    ],
)
def test_a_bad_staff_host_is_refused_with_a_reason(database_url, value, message):
    env = base_env(database_url, PORTAL_ENV="production", PORTAL_STAFF_BASE_URL=value)
    del env["PORTAL_STAFF_SAME_HOST"]
    with pytest.raises(ConfigError, match=message):
        create_app(env)


def test_a_staff_host_and_same_host_together_are_refused(database_url):
    env = base_env(database_url, PORTAL_STAFF_BASE_URL="https://staff.example.test")
    with pytest.raises(ConfigError, match="not both"):
        create_app(env)


def test_the_command_line_names_the_missing_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_ENV="production",
        PORTAL_BASE_URL="https://portal.example.test",
        PORTAL_INSTANCE_PATH=str(tmp_path),
    )
    portal = os.path.join(os.path.dirname(sys.executable), "portal")
    result = subprocess.run(
        [portal, "outbox", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORTAL_BASE_URL", "http://portal.example.test", "https"),
        ("PORTAL_BASE_URL", "https://portal.example.test/path", "origin"),
        ("PORTAL_SECRET_KEY", "too-short", "at least 32"),
        ("PORTAL_SMTP_URL", "http://mail.example.test", "smtp://"),
        ("PORTAL_ENV", "staging", "PORTAL_ENV"),
        ("PORTAL_DATA_KEYS", "not-a-key", "data key"),
        ("PORTAL_AUDIT_KEYS", "too-short-to-sign-anything", "audit keys"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(database_url, name, value, message):
    env = base_env(database_url, **{"PORTAL_ENV": "production", name: value})
    with pytest.raises((ConfigError, ValueError), match=message):
        create_app(env)


def test_development_generates_and_keeps_its_secrets(tmp_path, monkeypatch, make_app):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    env = {"PORTAL_ENV": "development"}
    first = make_app(env)
    second = make_app(env)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["DATA_KEYS"] == second.config["DATA_KEYS"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0  # owner-only
    assert first.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"


def test_every_route_declares_who_may_use_it(app):
    undeclared = [
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and access_of(app.view_functions[rule.endpoint]) is None
    ]
    assert undeclared == []
    public = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if access_of(app.view_functions[rule.endpoint]) == "public" or rule.endpoint == "static"
    }
    assert public == PUBLIC_ROUTES, "a new public route must be added to the allow list on purpose"


def test_a_view_without_a_declaration_is_refused(env, make_app):
    app = make_app(env)

    @app.get("/forgotten")
    def forgotten():
        return "secret"

    response = app.test_client().get("/forgotten")
    assert response.status_code == 403
    assert b"secret" not in response.data


def test_pages_carry_the_security_headers(client):
    first = client.get("/")
    second = client.get("/")
    assert first.status_code == 200
    csp = first.headers["Content-Security-Policy"]
    for directive in (
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "'strict-dynamic'",
        "report-uri https://portal.example.test/csp-report",
        "report-to csp",
    ):
        assert directive in csp
    assert first.headers["Reporting-Endpoints"] == 'csp="https://portal.example.test/csp-report"'
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert csp != second.headers["Content-Security-Policy"]  # a fresh nonce each time
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert first.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert first.headers["Cache-Control"] == "no-store"
    assert "Cookie" in first.headers["Vary"]
    assert first.headers["Strict-Transport-Security"].startswith("max-age=")
    assert first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Access-Control-Allow-Origin" not in first.headers


def test_no_cors_and_no_trace(client):
    response = client.get("/", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert client.open("/", method="TRACE").status_code == 405


def test_error_pages_are_generic_and_carry_a_reference(env, make_app):
    app = make_app(env)

    @app.get("/boom")
    def boom():
        raise RuntimeError("database password is hunter2")

    boom.access = "public"
    client = app.test_client()
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"].encode() in missing.data

    broken = client.get("/boom")
    assert broken.status_code == 500
    assert b"hunter2" not in broken.data and b"Traceback" not in broken.data
    assert b"Something went wrong on our side" in broken.data
    assert client.get("/console").status_code == 404


def test_dev_mail_is_404_outside_development(client, app):
    assert app.config["PORTAL_ENV"] == "testing"
    assert client.get("/dev/mail").status_code == 404
    assert client.get("/dev/mail/1").status_code == 404


def test_dev_mail_shows_the_notices_in_development(database_url, tmp_path, monkeypatch, make_app):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = make_app(base_env(database_url, PORTAL_ENV="development"))
    from datetime import date

    from portal.extensions import db
    from portal.services.incidents import create_incident

    with app.app_context():
        incident = create_incident(
            slug="dev-2026", title="Dev incident", discovered_on=date(2026, 1, 2), actor="test"
        )
        path = tmp_path / "c.csv"
        path.write_text(
            "external_id,full_name,email,data_classes\n"
            "C-1,Ann Example,ann@example.com,payment_card:4242\n",
            encoding="utf-8",
        )
        import_customers(incident, path, actor="test")
        queue_notices(incident, actor="test")
        db.session.remove()
        client = app.test_client()
        listing = client.get("/dev/mail")
        assert listing.status_code == 200
        assert b"Notice of Data Breach from Example Corp" in listing.data
        assert b"ann@example.com" in listing.data
        shown = client.get("/dev/mail/1")
        assert b"card ending 4242" in shown.data
        html = client.get("/dev/mail/1/html")
        assert b"<h1" in html.data
        assert "sandbox" in html.headers["Content-Security-Policy"]
        assert client.get("/dev/mail/999").status_code == 404


def test_customer_row_helper_is_valid(app, incident, write_csv):
    # Guards the other tests: the factory row itself must import cleanly.
    assert import_customers(incident, write_csv([customer_row(1)]), actor="test").created == 1


def test_production_serves_only_its_own_host(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_ENV="production"))
    client = app.test_client()
    assert client.get("/", base_url="https://portal.example.test").status_code == 200
    spoofed = client.get("/", base_url="https://evil.test")
    assert spoofed.status_code == 400
    forwarded = client.get(
        "/", base_url="https://portal.example.test", headers={"X-Forwarded-Host": "evil.test"}
    )
    assert forwarded.status_code == 200 and b"evil.test" not in forwarded.data


def test_production_cookies_are_host_only_secure_and_http_only(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_ENV="production"))
    client = app.test_client()
    response = client.get("/start", base_url="https://portal.example.test")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-portal=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Domain=" not in cookie and "Expires=" not in cookie


def test_rate_limits_fail_closed_when_their_store_is_down(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_REDIS_URL="redis://127.0.0.1:1/0"))
    client = app.test_client()
    page = client.get("/start")
    token = page.get_data(as_text=True).split('name="csrf_token" type="hidden" value="')[1]
    response = client.post(
        "/start",
        data={"csrf_token": token.split('"')[0], "reference": "x"},
        headers={"Referer": "https://localhost/"},
    )
    assert response.status_code == 503
    assert b"very busy" in response.data


def test_link_tokens_are_scrubbed_from_access_logs():
    import logging

    from portal.web.security import ScrubTokens

    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        "",
        0,
        '%s - - "%s" %s',
        ("127.0.0.1", "GET /a/eyJzZWNyZXQ.abc HTTP/1.1", "200"),
        None,
    )
    ScrubTokens().filter(record)
    assert "eyJzZWNyZXQ" not in record.getMessage()
    assert "/a/[token]" in record.getMessage()


def test_behind_one_proxy_the_client_address_is_the_forwarded_one(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_PROXY_HOPS="1"))

    @app.get("/whoami")
    def whoami():
        from flask import request

        return request.remote_addr

    whoami.access = "public"
    client = app.test_client()
    seen = client.get("/whoami", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert seen.data == b"198.51.100.7"  # only the last hop, the one our proxy added, counts


# --- Fetch Metadata: another site's page cannot make a write (finding 7 of issue 12) ---


def _language_switch(client, **headers):
    from tests.customer_flow import csrf_from

    page = client.get("/")
    return client.post(
        "/language",
        data={"csrf_token": csrf_from(page), "lang": "es", "next": "/"},
        headers=headers,
    )


def test_a_cross_site_write_is_refused_even_with_a_valid_token(client):
    refused = _language_switch(client, **{"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert b"You cannot open this page" in refused.data
    assert b'<html lang="en">' in client.get("/").data  # nothing was switched
    # Reading a page another site links to stays possible.
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


@pytest.mark.parametrize("site", ["same-origin", "same-site", "none", None])
def test_writes_from_our_pages_typed_addresses_and_old_browsers_pass(client, site):
    headers = {} if site is None else {"Sec-Fetch-Site": site}
    assert _language_switch(client, **headers).status_code == 302
    assert b'<html lang="es">' in client.get("/").data


def test_every_write_method_is_checked_before_csrf(client):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = client.open("/logout", method=method, headers={"Sec-Fetch-Site": "cross-site"})
        assert answer.status_code in (403, 405), (method, answer.status_code)
    # No token at all: the Fetch Metadata refusal comes first, not CSRF's 400.
    assert client.post("/language", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


# --- CSP reports ---

_REPORT_URI_BODY = {
    "csp-report": {
        "document-uri": "https://portal.example.test/a/SECRETTOKEN",
        "violated-directive": "script-src-elem 'nonce-abc' 'strict-dynamic'",
        "effective-directive": "script-src-elem",
        "blocked-uri": "https://evil.example/steal.js?who=ann@example.com",
    }
}
_REPORT_TO_BODY = [
    {
        "type": "csp-violation",
        "url": "https://portal.example.test/me",
        "body": {"effectiveDirective": "img-src", "blockedURL": "data:image/png;base64,AAAA"},
    },
    {
        "type": "csp-violation",
        "url": "https://portal.example.test/me",
        "body": {"effectiveDirective": "script-src-elem", "blockedURL": "inline"},
    },
]


def test_csp_reports_are_taken_counted_and_logged_without_personal_data(client, app, caplog):
    import json

    from portal.services import csp_reports

    caplog.set_level("INFO")
    # Browsers post from wherever the page is, without a CSRF token: cross-site too.
    first = client.post(
        "/csp-report",
        data=json.dumps(_REPORT_URI_BODY),
        content_type="application/csp-report",
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert first.status_code == 204 and first.data == b""
    batch = client.post(
        "/csp-report", data=json.dumps(_REPORT_TO_BODY), content_type="application/reports+json"
    )
    assert batch.status_code == 204
    lines = [r.getMessage() for r in caplog.records if "csp report" in r.getMessage()]
    assert lines == [
        "csp report: script-src-elem blocked https://evil.example",
        "csp report: img-src blocked data",
        "csp report: script-src-elem blocked inline",
    ]
    assert "SECRETTOKEN" not in caplog.text and "ann@example.com" not in caplog.text
    with app.test_request_context():
        assert csp_reports.count_today() == 3


def test_csp_reports_refuse_other_types_garbage_and_large_bodies(client, app):
    from portal.services import csp_reports

    assert client.post("/csp-report", data="{}", content_type="text/plain").status_code == 415
    garbage = client.post("/csp-report", data=b"\xff{", content_type="application/csp-report")
    assert garbage.status_code == 400
    big = {"csp-report": {"effective-directive": "img-src", "blocked-uri": "x" * 9000}}
    import json

    large = client.post("/csp-report", data=json.dumps(big), content_type="application/csp-report")
    assert large.status_code == 413
    assert client.get("/csp-report").status_code == 405
    with app.test_request_context():
        assert csp_reports.count_today() == 0


def test_csp_reports_are_rate_limited_per_network(client):
    import json

    from portal.web import limits

    allowed = int(limits.CSP_REPORT_PER_NETWORK.split()[0])
    body = json.dumps(_REPORT_URI_BODY)
    answers = [
        client.post("/csp-report", data=body, content_type="application/csp-report").status_code
        for _ in range(allowed + 1)
    ]
    assert answers[:allowed] == [204] * allowed and answers[-1] == 429
