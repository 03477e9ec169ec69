"""The SMS transport: POST {"to", "body"} as JSON to the provider with a bearer token."""

from __future__ import annotations

import json

from portal.mail.http import post


class SMSTransport:
    """Deliver texts through PORTAL_SMS_URL; 429 and 5xx are worth retrying, other 4xx are not."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url = url
        self.token = token
        self.timeout = timeout

    def send(self, recipient: str, body: str) -> None:
        post(
            self.url,
            json.dumps({"to": recipient, "body": body}).encode(),
            {"Authorization": f"Bearer {self.token}"},
            timeout=self.timeout,
            what="SMS provider",
        )

    def close(self) -> None:
        """Nothing to close: each text is one request."""


class DevMailbox:
    """Development only: accept every message and keep it readable at /dev/mail."""

    # The outbox row is this mailbox's copy: its body stays (portal.services.outbox.purge_body).
    keeps_body = True

    def send(self, *_args) -> None:
        return None

    def close(self) -> None:
        return None
