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
