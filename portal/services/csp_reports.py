"""Reports browsers send when the Content-Security-Policy blocked something: read, summed, kept
as a count (an injection attempt or a page we broke shows up as a rising number)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from portal import clock
from portal.extensions import limiter

log = logging.getLogger(__name__)

# The two formats browsers send: `report-uri` (one violation a request) and the Reporting API
# behind `report-to` (a batch of reports in a JSON list).
CSP_REPORT = "application/csp-report"
REPORTS_JSON = "application/reports+json"
CONTENT_TYPES = (CSP_REPORT, REPORTS_JSON)
# Counts are kept per day for a little over a week: enough to see a trend, little to keep.
_KEPT = timedelta(days=8)
_DIRECTIVE = re.compile(r"[a-z-]{1,40}")
# What a browser writes instead of a URL for what it blocked.
_KEYWORDS = frozenset({"inline", "eval", "data", "blob", "self", "wasm-eval", "trusted-types-sink"})
# A report is a few hundred bytes; 8 KB holds a batch with room to spare.
MAX_BYTES = 8 * 1024
# A report is small; a batch is a handful of them. More is not a browser's report.
MAX_REPORTS = 20


class ReportUnreadable(Exception):
    """Not a CSP report in either format."""


@dataclass(frozen=True)
class Violation:
    directive: str  # the directive that blocked, e.g. script-src-elem
    blocked: str  # the blocked resource's origin only, or a keyword such as "inline"


def read(content_type: str, body: bytes) -> list[Violation]:
    """The violations in a report body, each reduced to a directive and an origin."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReportUnreadable() from exc
    if content_type == CSP_REPORT:
        entries = [data.get("csp-report")] if isinstance(data, dict) else []
        keys = ("effective-directive", "violated-directive", "blocked-uri")
    else:
        entries = [
            item.get("body")
            for item in (data if isinstance(data, list) else [])[:MAX_REPORTS]
            if isinstance(item, dict) and item.get("type") == "csp-violation"
        ]
        keys = ("effectiveDirective", "violatedDirective", "blockedURL")
    violations = [_violation(entry, *keys) for entry in entries if isinstance(entry, dict)]
    if not violations:
        raise ReportUnreadable()
    return violations


def _violation(entry: dict, effective: str, violated: str, blocked: str) -> Violation:
    raw = entry.get(effective) or entry.get(violated) or ""
    # The violated directive may carry its source list (nonces included): the name only.
    name = str(raw).split(" ", 1)[0].strip().lower()
    return Violation(
        directive=name if _DIRECTIVE.fullmatch(name) else "unknown",
        blocked=_origin(str(entry.get(blocked) or "")),
    )


def _origin(blocked: str) -> str:
    """Only the origin of what was blocked: a path or query may hold a token or a name."""
    if blocked.strip().lower() in _KEYWORDS:
        return blocked.strip().lower()
    parts = urlsplit(blocked.strip())
    if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname:
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "unreadable"
        return f"{parts.scheme}://{parts.hostname}{port}"
    if parts.scheme in ("data", "blob", "filesystem", "about", "chrome-extension", "moz-extension"):
        return parts.scheme  # the kind, never the content
    return "unreadable" if blocked else "none"


def record(violations: list[Violation]) -> None:
    """Log one scrubbed line per violation and add them to today's count."""
    for violation in violations:
        log.warning("csp report: %s blocked %s", violation.directive, violation.blocked)
    # The rate-limit store (Redis in production) holds the count: shared by every instance,
    # and nothing a stranger sends is written to the database.
    limiter.storage.incr(_key(), int(_KEPT.total_seconds()), amount=len(violations))


def count_today() -> int:
    """How many violations browsers reported today (UTC)."""
    return int(limiter.storage.get(_key()) or 0)


def _key() -> str:
    return f"portal/csp-reports/{clock.now().date().isoformat()}"
