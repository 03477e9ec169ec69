"""The SMS transport: POST {"to", "body"} as JSON to the provider with a bearer token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from portal.mail.smtp import DeliveryError


class SMSTransport:
    """Deliver texts through PORTAL_SMS_URL; 429 and 5xx are worth retrying, other 4xx are not."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url = url
        self.token = token
        self.timeout = timeout

    def send(self, recipient: str, body: str) -> None:
        request = urllib.request.Request(  # noqa: S310 (the configured provider's https URL)
            self.url,
            data=json.dumps({"to": recipient, "body": body}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            retry = exc.code == 429 or exc.code >= 500
            raise DeliveryError(f"SMS provider answered {exc.code}", permanent=not retry) from exc
        except (OSError, ValueError) as exc:
            raise DeliveryError(
                f"SMS provider unreachable: {type(exc).__name__}", permanent=False, connection=True
            ) from exc

    def close(self) -> None:
        """Nothing to close: each text is one request."""


class DevMailbox:
    """Development only: accept every message and keep it readable at /dev/mail."""

    def send(self, *_args) -> None:
        return None

    def close(self) -> None:
        return None
