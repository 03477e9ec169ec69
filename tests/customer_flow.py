"""Helpers that walk the customer's way in like a browser does (CSRF tokens and all)."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import OutboxMessage
from portal.services.outbox import open_message
from tests.conftest import BASE_URL

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(response) -> str:
    match = _TOKEN.search(response.get_data(as_text=True))
    assert match, "the page has no CSRF token"
    return match.group(1)


def messages_to(address: str) -> list:
    db.session.expire_all()
    rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
    return [m for m in (open_message(r) for r in rows) if m.recipient == address]


def link_path(address: str) -> str:
    """The path of the newest access link mailed to address."""
    for message in reversed(messages_to(address)):
        for line in message.text.splitlines():
            if line.startswith(BASE_URL + "/a/"):
                return line.removeprefix(BASE_URL)
    raise AssertionError(f"no link was mailed to {address}")


def code_sent_to(address: str) -> str:
    """The newest one-time code sent to address: a standalone 6-digit line."""
    for message in reversed(messages_to(address)):
        for line in message.text.splitlines():
            if re.fullmatch(r"\d{6}", line.strip()):
                return line.strip()
    raise AssertionError(f"no code was sent to {address}")


def start_from_link(client, path: str):
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return client.post(path, data={"csrf_token": csrf_from(page)})


def submit_code(client, code: str, **headers):
    page = client.get("/verify")
    return client.post(
        "/verify", data={"csrf_token": csrf_from(page), "code": code}, headers=headers
    )


def sign_in(client, address: str):
    """The whole way in for the customer with this address; return the dashboard response."""
    started = start_from_link(client, link_path(address))
    assert started.status_code == 302 and started.headers["Location"] == "/verify"
    verified = submit_code(client, code_sent_to(address))
    assert verified.status_code == 302 and verified.headers["Location"] == "/me", verified.data
    return client.get("/me")


def run_jobs(app) -> None:
    """What `portal jobs work --once` does: run every due job (emails they queue stay queued)."""
    from portal.cli import work_turn

    with app.app_context():
        while work_turn()[1] is not None:
            pass
