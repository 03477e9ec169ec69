"""Events for the organisation's own systems: JSON POSTs signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request

from portal.mail.smtp import DeliveryError

SIGNATURE_HEADER = "X-Portal-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: the receiver recomputes it and compares in constant time."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport:
    def __init__(self, secret: str, timeout: float = 10.0):
        self.secret = secret
        self.timeout = timeout

    def send(self, url: str, body: bytes, *, event: str) -> None:
        request = urllib.request.Request(  # noqa: S310 (the organisation's configured https URL)
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Portal-Event": event,
                SIGNATURE_HEADER: sign(self.secret, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            retry = exc.code == 429 or exc.code >= 500
            raise DeliveryError(f"webhook answered {exc.code}", permanent=not retry) from exc
        except (OSError, ValueError) as exc:
            raise DeliveryError(
                f"webhook unreachable: {type(exc).__name__}", permanent=False, connection=True
            ) from exc

    def close(self) -> None:
        """Nothing to close: each event is one request."""
