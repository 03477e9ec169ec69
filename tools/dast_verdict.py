"""`make dast`: read wapiti's JSON report, list every finding, fail on what must not ship.

Blocking: any vulnerability or anomaly of medium (wapiti level 2) or higher, and, whatever their
level, the findings of the header, CSP, cookie-flag and CSRF checks (OPS-03 sets those rules to
FAIL; wapiti rates a missing CSP or a cookie without Secure only "low"). Informational notes
("additionals", such as the methods OPTIONS lists) are printed and never block.
A finding listed in tools/dast-accepted.toml (looked at, not a vulnerability, with the reason)
is printed as ACCEPTED and does not block.
Exit 0 when nothing blocks, 1 otherwise, 2 when the report is missing or unreadable (a scan that
did not finish proves nothing).
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ACCEPTED = Path(__file__).with_name("dast-accepted.toml")
KEY = ("module", "method", "path", "parameter")

SECTIONS = {"vulnerabilities": "vulnerability", "anomalies": "anomaly", "additionals": "note"}
LEVELS = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}
FAIL_AT = 2  # medium and above block (OPS-03: "High findings block release"; we are stricter)
ALWAYS_FAIL = {"csp", "http_headers", "cookieflags", "csrf"}  # OPS-03's FAIL rules, any level


def accepted(path: Path = ACCEPTED) -> dict[tuple, str]:
    """{(module, method, path, parameter): reason} of the findings judged not to be flaws."""
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("accepted", [])
    return {tuple(entry[k] for k in KEY): entry["reason"] for entry in entries}


def main(path: str, accepted_path: Path = ACCEPTED) -> int:
    judged = accepted(accepted_path)
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as error:
        print(f"dast: no readable wapiti report at {path}: {error}")
        return 2
    blocking = 0
    for section, kind in SECTIONS.items():
        for category, findings in sorted(report.get(section, {}).items()):
            for finding in findings:
                level = int(finding.get("level", 0))
                blocks = section != "additionals" and (
                    level >= FAIL_AT or finding.get("module") in ALWAYS_FAIL
                )
                reason = judged.get(tuple(finding.get(k) or "" for k in KEY))
                blocks = blocks and reason is None
                blocking += blocks
                where = f"{finding.get('method', '')} {finding.get('path', '')}".strip()
                param = finding.get("parameter") or ""
                print(
                    ("BLOCKS   " if blocks else "ACCEPTED " if reason else " " * 9)
                    + f"{LEVELS.get(level, level):>8}  {kind:<13} {category}: {where}"
                    + (f" [{param}]" if param else "")
                    + f"\n          {finding.get('info', '')[:300]}"
                    + (f"\n          accepted: {reason}" if reason else "")
                )
    crawled = report.get("infos", {}).get("crawled_pages_nbr", "?")
    print(f"dast: {crawled} pages crawled; {blocking} blocking finding(s)")
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
