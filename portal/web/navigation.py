"""Where a person may be sent next: shared by every blueprint, so no view imports another's."""

from __future__ import annotations


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host, scheme or a protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ch in target for ch in "\\\r\n\t") or ":" in target.split("?")[0]:
        return None
    return target
