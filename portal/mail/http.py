"""One JSON POST to a service, its failure sorted like a mail server's: retry or give up."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from portal.mail.smtp import DeliveryError


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, what: str) -> None:
    """POST body; raise DeliveryError (429 and 5xx worth retrying, other 4xx not)."""
    # urllib also opens file:// and ftp://: a service is only ever reached over the web.
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError(f"{what} URL is not http(s)", permanent=True)
    request = urllib.request.Request(  # noqa: S310 (a configured https URL of ours)
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        opened = urllib.request.urlopen(  # noqa: S310  # nosec B310: scheme checked above
            request, timeout=timeout
        )
        with opened as response:
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        retry = exc.code == 429 or exc.code >= 500
        raise DeliveryError(f"{what} answered {exc.code}", permanent=not retry) from exc
    except http.client.HTTPException as exc:
        # A garbled or cut-off answer (IncompleteRead, BadStatusLine): the provider got the
        # request and may have acted on it.
        raise DeliveryError(
            f"{what} answered badly: {type(exc).__name__}",
            permanent=False,
            connection=True,
            maybe_taken=True,
        ) from exc
    except (OSError, ValueError) as exc:
        # A timeout may come after the provider took the request; a refused connection cannot.
        timed_out = isinstance(exc, TimeoutError) or isinstance(
            getattr(exc, "reason", None), TimeoutError
        )
        raise DeliveryError(
            f"{what} unreachable: {type(exc).__name__}",
            permanent=False,
            connection=True,
            maybe_taken=timed_out,
        ) from exc
