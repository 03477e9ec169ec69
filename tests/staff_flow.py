"""Helpers that walk staff through set-up and sign-in, on the tests' movable clock."""

from __future__ import annotations

import html
import re

import pyotp
from sqlalchemy import select

from portal.extensions import db, vault
from portal.models import StaffMember
from portal.services.staff import invite
from tests.conftest import BASE_URL, Clock
from tests.customer_flow import csrf_from

PASSWORD = "lantern orchard velvet compass"


def member(email: str) -> StaffMember:
    db.session.expire_all()
    return next(m for m in db.session.scalars(select(StaffMember)) if m.email == email)


def code_for(email: str, clock: Clock) -> str:
    m = member(email)
    return pyotp.TOTP(vault.open(m.totp_sealed, f"staff.totp.{m.public_id}")).at(clock.now())


def set_up(app, client, email: str, role: str, clock: Clock, *, roles=()) -> list[str]:
    """Invitation to a fully signed-in session (in `role` and any further `roles`); return the
    recovery codes shown."""
    link = invite(email, role, actor="test", roles=roles)
    path = link.removeprefix(BASE_URL)
    page = client.get(path)
    assert page.status_code == 200
    response = client.post(
        path, data={"csrf_token": csrf_from(page), "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.headers["Location"] == "/staff/setup-authenticator", response.data[:500]
    page = client.get("/staff/setup-authenticator")
    assert b"data:image/svg+xml" in page.data
    response = client.post(
        "/staff/setup-authenticator",
        data={"csrf_token": csrf_from(page), "code": code_for(email, clock)},
    )
    codes = re.findall(r'<li class="code">([A-Z0-9-]+)</li>', response.get_data(as_text=True))
    assert len(codes) == 10
    return codes


def log_in(client, email: str, clock: Clock, *, code: str | None = None):
    page = client.get("/staff/login")
    response = client.post(
        "/staff/login", data={"csrf_token": csrf_from(page), "email": email, "password": PASSWORD}
    )
    assert response.headers.get("Location") == "/staff/code", response.data[:300]
    clock.tick()
    page = client.get("/staff/code")
    return client.post(
        "/staff/code", data={"csrf_token": csrf_from(page), "code": code or code_for(email, clock)}
    )


def reauth(client, email: str, clock: Clock, target: str):
    """Prove it is them again (password and a fresh code), then return to target."""
    clock.tick()
    page = client.get(f"/staff/reauth?next={target}")
    return client.post(
        "/staff/reauth",
        data={
            "csrf_token": csrf_from(page),
            "next": target,
            "password": PASSWORD,
            "code": code_for(email, clock),
        },
    )


def confirm_it_is_you(client, asked, email: str, clock: Clock):
    """Answer a request for a fresh proof as a person would: open the page it redirected to and
    send the password and a new code wherever that page's form goes."""
    clock.tick()
    page = client.get(asked.headers["Location"])
    form = re.search(
        r'<form method="post" action="([^"]+)" class="panel".*?</form>',
        page.get_data(as_text=True),
        re.S,
    )
    assert form, "no 'Confirm it is you' form"
    hidden = re.findall(r'<input type="hidden" name="(next|resume)" value="([^"]*)">', form[0])
    return client.post(
        html.unescape(form[1]),
        data={
            "csrf_token": csrf_from(page),
            **{name: html.unescape(value) for name, value in hidden},
            "password": PASSWORD,
            "code": code_for(email, clock),
        },
    )
