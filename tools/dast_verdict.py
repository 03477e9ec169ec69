"""`make dast`: read wapiti's JSON report, list every finding, fail on what must not ship.

Blocking: any vulnerability or anomaly of medium (wapiti level 2) or higher, and, whatever their
level, the findings of the header, CSP, cookie-flag and CSRF checks (OPS-03 sets those rules to
FAIL; wapiti rates a missing CSP or a cookie without Secure only "low"). Informational notes
("additionals", such as the methods OPTIONS lists) are printed and never block.
Exit 0 when nothing blocks, 1 otherwise, 2 when the report is missing or unreadable (a scan that
did not finish proves nothing).
"""

from __future__ import annotations

import json
import sys

SECTIONS = {"vulnerabilities": "vulnerability", "anomalies": "anomaly", "additionals": "note"}
LEVELS = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}
FAIL_AT = 2  # medium and above block (OPS-03: "High findings block release"; we are stricter)
ALWAYS_FAIL = {"csp", "http_headers", "cookieflags", "csrf"}  # OPS-03's FAIL rules, any level


def main(path: str) -> int:
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
                blocking += blocks
                where = f"{finding.get('method', '')} {finding.get('path', '')}".strip()
                param = finding.get("parameter") or ""
                print(
                    ("BLOCKS " if blocks else "       ")
                    + f"{LEVELS.get(level, level):>8}  {kind:<13} {category}: {where}"
                    + (f" [{param}]" if param else "")
                    + f"\n          {finding.get('info', '')[:300]}"
                )
    crawled = report.get("infos", {}).get("crawled_pages_nbr", "?")
    print(f"dast: {crawled} pages crawled; {blocking} blocking finding(s)")
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
