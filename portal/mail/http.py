"""One JSON POST to a service, its failure sorted like a mail server's: retry or give up."""

from __future__ import annotations

import urllib.error
import urllib.request

from portal.mail.smtp import DeliveryError


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, what: str) -> None:
    """POST body; raise DeliveryError (429 and 5xx worth retrying, other 4xx not)."""
    request = urllib.request.Request(  # noqa: S310 (a configured https URL of ours)
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        retry = exc.code == 429 or exc.code >= 500
        raise DeliveryError(f"{what} answered {exc.code}", permanent=not retry) from exc
    except (OSError, ValueError) as exc:
        raise DeliveryError(
            f"{what} unreachable: {type(exc).__name__}", permanent=False, connection=True
        ) from exc
