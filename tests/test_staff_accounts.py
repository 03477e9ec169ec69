"""Staff accounts held under attack: sign-out really signs out, an MFA reset hands nothing to the
admin, invitations are short-lived, and sign-in tells nothing by the work it does."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import AuditEvent
from portal.services import staff as staff_service
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from tests.conftest import BASE_URL, INCIDENT, base_env, customer_row
from tests.customer_flow import csrf_from, messages_to, sign_in
from tests.staff_flow import PASSWORD, member, reauth, set_up

AGENT = "agent.b@example.com"
ADMIN = "admin.b@example.com"


class ProductionClient(FlaskClient):
    """A browser on the production host over HTTPS (same-origin Referer on every POST)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("base_url", BASE_URL)
        if kwargs.get("method", "GET") == "POST":
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Referer", BASE_URL + "/")
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


@pytest.fixture
def production(database_url, make_app):
    app = make_app(base_env(database_url, PORTAL_ENV="production"))
    app.test_client_class = ProductionClient
    with app.app_context():
        yield app


def _deletion(response, name: str) -> str:
    """The Set-Cookie header that deletes the named cookie."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"{name} is not deleted: {response.headers.getlist('Set-Cookie')}")


def _deleted_like_it_was_set(header: str, samesite: str) -> None:
    parsed = SimpleCookie(header)
    (morsel,) = parsed.values()
    assert morsel.value == "" and (morsel["max-age"] == "0" or "1970" in morsel["expires"])
    # A browser drops a __Host- cookie only when the deletion is Secure with Path=/.
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == "/"
    assert morsel["samesite"] == samesite and not morsel["domain"]


# --- a. signing out deletes the __Host- cookie with the attributes it was set with ---


def test_staff_sign_out_deletes_the_host_cookie_as_securely_as_it_was_set(production):
    link = staff_service.invite(AGENT, "agent", actor="test")
    token = staff_service.accept_invitation(
        link.removeprefix(BASE_URL + "/staff/setup/"), PASSWORD, PASSWORD
    )
    db.session.commit()
    client = production.test_client()
    client.set_cookie("__Host-portal_staff", token, domain="portal.example.test")
    page = client.get("/staff/setup-authenticator")
    assert page.status_code == 200

    response = client.post("/staff/logout", data={"csrf_token": csrf_from(page)})

    assert response.status_code == 302
    _deleted_like_it_was_set(_deletion(response, "__Host-portal_staff"), "Strict")
    # The browser is told to clear cache and storage; not every cookie, since the device cookie
    # must survive so a stranger's lock on the account never shuts the member's browser out.
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert any(h.startswith("portal=;") for h in response.headers.getlist("Set-Cookie")) or (
        client.get_cookie("portal") is None
    )


def test_customer_sign_out_deletes_the_host_cookie_as_securely_as_it_was_set(production, write_csv):
    incident = create_incident(**INCIDENT, actor="test")
    rows = [customer_row(1, email="ann@example.com", phone="")]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    client = production.test_client()
    page = sign_in(client, "ann@example.com")

    response = client.post("/logout", data={"csrf_token": csrf_from(page)})

    assert response.status_code == 302
    _deleted_like_it_was_set(_deletion(response, "__Host-portal"), "Lax")


# --- b. an MFA reset sends the set-up link to the member only ---


def test_an_mfa_reset_sends_the_set_up_link_to_the_member_and_never_shows_it_to_the_admin(
    app, clock
):
    agent, admin = app.test_client(), app.test_client()
    set_up(app, agent, AGENT, "agent", clock)
    set_up(app, admin, ADMIN, "admin", clock)
    target = member(AGENT)
    reauth(admin, ADMIN, clock, "/admin/staff")
    page = admin.get("/admin/staff")

    response = admin.post(
        f"/admin/staff/{target.public_id}/reset-mfa", data={"csrf_token": csrf_from(page)}
    )

    assert response.status_code == 302 and response.headers["Location"] == "/admin/staff"
    shown = admin.get("/admin/staff").get_data(as_text=True)
    assert "A set-up link was sent to the member" in shown
    assert "/staff/setup/" not in response.get_data(as_text=True) + shown
    assert not any("/staff/setup/" in m.text for m in messages_to(ADMIN))
    (sent,) = [m for m in messages_to(AGENT) if "/staff/setup/" in m.text]
    link = next(line for line in sent.text.splitlines() if line.startswith(BASE_URL))
    assert agent.get("/staff/cases").headers["Location"] == "/staff/login"  # sessions ended
    assert app.test_client().get(link.removeprefix(BASE_URL)).status_code == 200
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff.mfa_reset")
    ).one()
    assert (
        event.subject_id == target.public_id and event.actor == f"staff:{member(ADMIN).public_id}"
    )


# --- e. a real address and an unknown one cost the same work ---


def _shape(statement: str) -> str:
    """A statement reduced to what it does and where: its verb and the table it reads or
    writes (parameters and column lists differ between an ORM flush and a Core update)."""
    words = statement.split()
    verb = words[0].upper()
    if verb == "SELECT" and "FROM" in (w.upper() for w in words):
        table = words[[w.upper() for w in words].index("FROM") + 1]
    elif verb in ("UPDATE", "INSERT", "DELETE"):
        table = words[2] if verb in ("INSERT", "DELETE") else words[1]
    else:
        table = words[1] if len(words) > 1 else ""  # pg_advisory_xact_lock(...), SAVEPOINT ...
    return f"{verb} {table.strip('(').split('.')[0]}"


def _statements_of_a_failed_sign_in(app, email: str) -> list[str]:
    client = app.test_client()
    token = csrf_from(client.get("/staff/login"))
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args):
        seen.append(_shape(statement))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        answer = client.post(
            "/staff/login",
            data={"csrf_token": token, "email": email, "password": "not the password at all"},
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert answer.status_code == 422
    return seen


def test_a_wrong_password_for_a_real_address_does_the_same_database_work_as_an_unknown_one(
    app, clock
):
    set_up(app, app.test_client(), AGENT, "agent", clock)

    real = _statements_of_a_failed_sign_in(app, AGENT)
    unknown = _statements_of_a_failed_sign_in(app, "nobody@example.com")

    # The same reads and writes (a staff_member update, an audit event), hence the same commit:
    # timing no longer tells a staff address from any other.
    assert sorted(real) == sorted(unknown), (real, unknown)
    assert any(s.startswith("UPDATE staff_member") for s in unknown)
    assert any(s.startswith("INSERT audit_event") for s in unknown)
    # The unknown address is recorded only as a keyed digest, never in clear.
    db.session.expire_all()
    failed = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff.sign_in_failed")
    ).all()
    assert len(failed) == 2
    assert not any("nobody" in (e.subject_id + e.details) for e in failed)
    assert member(AGENT).failed_logins == 1  # only the real account's count moved


# --- CSRF-02: over HTTPS a POST whose Referer is another site is refused even with a token ---


@pytest.mark.parametrize("referer", ["https://evil.example.net/", None])
def test_a_post_from_another_site_or_without_a_referer_is_refused_over_https(production, referer):
    client = production.test_client()
    page = client.get("/staff/login")
    headers = {"Referer": referer} if referer else {}
    if referer is None:
        # The test browser adds a same-origin Referer to every POST; send the request bare.
        response = FlaskClient.open(
            client,
            "/staff/login",
            method="POST",
            base_url=BASE_URL,
            data={"csrf_token": csrf_from(page), "email": AGENT, "password": PASSWORD},
        )
    else:
        response = client.post(
            "/staff/login",
            headers=headers,
            data={"csrf_token": csrf_from(page), "email": AGENT, "password": PASSWORD},
        )
    assert response.status_code == 400
    # Refused before any work: no sign-in attempt was recorded.
    assert (
        db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("staff.%"))).all() == []
    )
