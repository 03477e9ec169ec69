"""Staff on their own host (AZ-05): with PORTAL_STAFF_BASE_URL set, /staff and /admin answer only
there, customer pages only on the public host, the staff cookies are the staff host's own and
Strict, and every staff link names the staff host."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from flask.testing import FlaskClient

from portal.extensions import db
from portal.services import staff as staff_service
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.web.hosts import SHARED_ENDPOINTS, is_staff_side
from tests.conftest import BASE_URL, INCIDENT, base_env, customer_row
from tests.customer_flow import csrf_from, link_path, messages_to
from tests.staff_flow import PASSWORD

STAFF_URL = "https://staff.example.test"
ADMIN = "admin.host@example.com"


def staff_host_env(database_url: str, **extra: str) -> dict[str, str]:
    env = base_env(database_url, PORTAL_STAFF_BASE_URL=STAFF_URL, **extra)
    del env["PORTAL_STAFF_SAME_HOST"]  # a staff host instead: one or the other, never both
    return env


def browser_on(origin: str):
    """A test client class for a browser on one origin (same-origin Referer on every POST)."""

    class OnOrigin(FlaskClient):
        def open(self, *args, **kwargs):
            kwargs.setdefault("base_url", origin)
            if kwargs.get("method", "GET") == "POST":
                headers = dict(kwargs.pop("headers", None) or {})
                headers.setdefault("Referer", kwargs["base_url"] + "/")
                kwargs["headers"] = headers
            return super().open(*args, **kwargs)

    return OnOrigin


def clients(app) -> tuple[FlaskClient, FlaskClient]:
    """(a browser on the public host, a browser on the staff host), each with its own cookies."""
    app.test_client_class = browser_on(BASE_URL)
    public = app.test_client()
    app.test_client_class = browser_on(STAFF_URL)
    return public, app.test_client()


@pytest.fixture(params=["testing", "production"])
def two_hosts(request, database_url, make_app):
    """The app with a staff host, as tests run it and as production runs it."""
    app = make_app(staff_host_env(database_url, PORTAL_ENV=request.param))
    with app.app_context():
        yield app


def _set_cookie(response, name: str) -> SimpleCookie | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return next(iter(SimpleCookie(header).values()))
    return None


# --- each side answers on its own host only ---


def test_staff_pages_on_the_public_host_are_not_found(two_hosts):
    public, staff = clients(two_hosts)
    link = staff_service.invite(ADMIN, "admin", actor="test")
    db.session.commit()
    setup_path = link.removeprefix(STAFF_URL)
    for path in ("/staff/login", "/staff/cases", "/admin/", "/admin/audit", setup_path):
        assert public.get(path).status_code == 404, path
    # A write is a 404 too, before the CSRF check: the public host does not know the route.
    refused = public.post("/staff/login", data={"email": ADMIN, "password": PASSWORD})
    assert refused.status_code == 404
    assert b"Page not found" in refused.data
    # The same pages open on the staff host.
    assert staff.get("/staff/login").status_code == 200
    assert staff.get(setup_path).status_code == 200
    assert staff.get("/staff/cases").headers["Location"] == "/staff/login"


def test_customer_pages_on_the_staff_host_are_not_found(two_hosts, write_csv):
    public, staff = clients(two_hosts)
    incident = create_incident(**INCIDENT, actor="test")
    import_customers(incident, write_csv([customer_row(1, email="ann@example.com")]), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    notice_link = link_path("ann@example.com")
    for path in (notice_link, "/start", "/signin", "/help", "/me", f"/incidents/{incident.slug}"):
        assert staff.get(path).status_code == 404, path
    assert staff.post("/start", data={"reference": "x"}).status_code == 404
    assert public.get(notice_link).status_code == 200
    assert public.get(f"/incidents/{incident.slug}").status_code == 200
    # The staff host's bare name leads to the staff pages' door, not to the customer front page.
    assert staff.get("/").headers["Location"] == "/staff/cases"
    assert public.get("/").status_code == 200


def test_the_stylesheet_health_checks_and_language_switch_work_on_both_hosts(two_hosts):
    public, staff = clients(two_hosts)
    for browser in (public, staff):
        stylesheet = browser.get("/static/css/portal.css")
        assert stylesheet.status_code == 200
        stylesheet.close()
        assert browser.get("/healthz").status_code == 200
        assert browser.get("/readyz").status_code == 200
    page = staff.get("/staff/login")
    switched = staff.post(
        "/language", data={"csrf_token": csrf_from(page), "lang": "es", "next": "/staff/login"}
    )
    assert switched.headers["Location"] == "/staff/login"
    assert b'<html lang="es">' in staff.get("/staff/login").data
    # A staff page reports CSP violations to its own host, and its header links stay there.
    shown = staff.get("/staff/login")
    assert f"report-uri {STAFF_URL}/csp-report" in shown.headers["Content-Security-Policy"]
    assert b'class="brand" href="/staff/cases"' in shown.data


def test_every_route_is_not_found_on_the_other_host(two_hosts):
    """The route walk: each rule, with each of its methods, answers 404 on the wrong host."""
    public, staff = clients(two_hosts)
    adapter = two_hosts.url_map.bind("localhost")
    answered = []
    for rule in two_hosts.url_map.iter_rules():
        if rule.endpoint in SHARED_ENDPOINTS:
            continue
        wrong = public if is_staff_side(rule.endpoint) else staff
        path = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, 1))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = wrong.open(path, method=method)
            if (rule.endpoint, answer.headers.get("Location")) == ("public.index", "/staff/cases"):
                continue  # the staff host's bare name: the door to the staff pages, on purpose
            answered.append((rule.endpoint, method, answer.status_code))
    assert answered and all(status == 404 for _, _, status in answered), [
        a for a in answered if a[2] != 404
    ]
    assert {endpoint.split(".")[0] for endpoint, _, _ in answered} >= {"staff", "admin", "customer"}


# --- the staff cookies are the staff host's own, and Strict ---


def test_the_staff_cookie_is_set_only_on_the_staff_host_and_is_strict(database_url, make_app):
    app = make_app(staff_host_env(database_url, PORTAL_ENV="production"))
    with app.app_context():
        public, staff = clients(app)
        link = staff_service.invite(ADMIN, "admin", actor="test")
        db.session.commit()
        path = link.removeprefix(STAFF_URL)
        form = {"password": PASSWORD, "confirm": PASSWORD}

        refused = public.post(path, data={"csrf_token": csrf_from(public.get("/start")), **form})
        assert refused.status_code == 404
        assert _set_cookie(refused, "__Host-portal_staff") is None

        page = staff.get(path)
        # The staff host's own session (its CSRF token) is Strict; the public host's stays Lax,
        # so a customer's notice link opened from a mail client still finds its session.
        assert _set_cookie(page, "__Host-portal")["samesite"] == "Strict"
        customer = browser_on(BASE_URL)(app, app.response_class, use_cookies=True)
        assert _set_cookie(customer.get("/start"), "__Host-portal")["samesite"] == "Lax"
        accepted = staff.post(path, data={"csrf_token": csrf_from(page), **form})
        assert accepted.headers["Location"] == "/staff/setup-authenticator"
        cookie = _set_cookie(accepted, "__Host-portal_staff")
        assert cookie["samesite"] == "Strict" and cookie["secure"] and cookie["httponly"]
        assert cookie["path"] == "/" and not cookie["domain"]
        assert staff.get("/staff/setup-authenticator").status_code == 200

        # Carried to the public host by hand, the cookie opens nothing there.
        public.set_cookie("__Host-portal_staff", cookie.value, domain="portal.example.test")
        assert public.get("/staff/setup-authenticator").status_code == 404


# --- every staff link names the staff host ---


def test_an_invitation_link_names_the_staff_host(two_hosts):
    link = staff_service.invite(ADMIN, "admin", actor="test")
    assert link.startswith(f"{STAFF_URL}/staff/setup/")


def test_the_invite_command_prints_a_staff_host_link(database_url, make_app):
    app = make_app(staff_host_env(database_url))
    with app.app_context():
        result = app.test_cli_runner().invoke(
            args=["staff", "invite", "--email", ADMIN, "--role", "admin"]
        )
    assert result.exit_code == 0, result.output
    assert f"{STAFF_URL}/staff/setup/" in result.output
    assert f"{BASE_URL}/staff" not in result.output


def test_a_set_up_link_mailed_after_an_mfa_reset_names_the_staff_host(two_hosts):
    staff_service.invite(ADMIN, "admin", actor="test")
    member = staff_service.by_email(ADMIN)
    staff_service.reset_mfa(member, actor="test")
    db.session.commit()
    (message,) = messages_to(ADMIN)
    assert f"{STAFF_URL}/staff/setup/" in message.text
    assert f"{BASE_URL}/staff" not in message.text + message.html


def test_without_a_staff_host_staff_links_keep_the_public_host(app, client):
    # PORTAL_STAFF_SAME_HOST=1 (the tests' default): one host serves everything, as before.
    assert staff_service.invite(ADMIN, "admin", actor="test").startswith(f"{BASE_URL}/staff/")
    assert client.get("/staff/login").status_code == 200
    assert client.get("/start").status_code == 200
