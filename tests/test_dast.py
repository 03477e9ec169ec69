"""`make dast` fails on what must not ship and says what it found (OPS-03, docs/dast.md)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from portal import ROOT

_spec = importlib.util.spec_from_file_location("dast_verdict", ROOT / "tools/dast_verdict.py")
dast_verdict = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dast_verdict)


def finding(module: str, level: int, path: str = "/me") -> dict:
    return {"method": "GET", "path": path, "info": f"{module} says so", "level": level,
            "parameter": "", "module": module}  # fmt: skip


@pytest.fixture
def report(tmp_path):
    """Write a wapiti JSON report with the given sections; return its path."""

    def write(**sections) -> str:
        path = tmp_path / "wapiti.json"
        body = {"vulnerabilities": {}, "anomalies": {}, "additionals": {}, "infos": {}}
        body.update(sections)
        path.write_text(json.dumps(body))
        return str(path)

    return write


def test_a_clean_scan_passes_and_says_so(report, capsys):
    path = report(additionals={"HTTP Methods": [finding("methods", 0, "/help")]})
    assert dast_verdict.main(path) == 0
    out = capsys.readouterr().out
    assert "HTTP Methods: GET /help" in out  # informational notes are listed, not hidden
    assert "0 blocking finding(s)" in out


@pytest.mark.parametrize(
    "section, category, module, level",
    [
        ("vulnerabilities", "SQL Injection", "sql", 4),
        ("vulnerabilities", "Cross Site Scripting", "xss", 3),
        ("vulnerabilities", "Open Redirect", "redirect", 2),
        ("anomalies", "Internal Server Error", "sql", 3),
        # OPS-03 sets header, CSP, cookie and CSRF rules to FAIL, whatever wapiti rates them.
        ("vulnerabilities", "Content Security Policy Configuration", "csp", 1),
        ("vulnerabilities", "HTTP Secure Headers", "http_headers", 1),
        ("vulnerabilities", "Secure Flag cookie", "cookieflags", 1),
        ("vulnerabilities", "Cross Site Request Forgery", "csrf", 2),
    ],
)
def test_a_finding_of_medium_or_higher_or_of_a_fail_rule_fails_the_scan(
    report, capsys, section, category, module, level
):
    assert dast_verdict.main(report(**{section: {category: [finding(module, level)]}})) == 1
    out = capsys.readouterr().out
    assert "BLOCKS" in out and f"{category}: GET /me" in out
    assert "1 blocking finding(s)" in out


def test_a_low_finding_outside_the_fail_rules_is_listed_without_failing(report, capsys):
    path = report(
        vulnerabilities={"Information Disclosure": [finding("information_disclosure", 1)]}
    )
    assert dast_verdict.main(path) == 0
    assert "Information Disclosure: GET /me" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "", "{not json"])
def test_a_scan_without_a_readable_report_fails(tmp_path, capsys, content):
    path = tmp_path / "wapiti.json"
    if content is not None:
        path.write_text(content)
    assert dast_verdict.main(str(path)) == 2
    assert "no readable wapiti report" in capsys.readouterr().out


ACCEPTED_SQL = """
[[accepted]]
module = "sql"
method = "GET"
path = "/me"
parameter = "phone"
reason = "a length limit, not SQL"
"""


def sql_on(parameter: str) -> dict:
    return {"SQL Injection": [{**finding("sql", 4), "parameter": parameter}]}


def test_a_finding_judged_not_a_flaw_is_shown_as_accepted_with_its_reason(report, tmp_path, capsys):
    judged = tmp_path / "accepted.toml"
    judged.write_text(ACCEPTED_SQL)
    assert dast_verdict.main(report(vulnerabilities=sql_on("phone")), judged) == 0
    out = capsys.readouterr().out
    assert "ACCEPTED" in out and "a length limit, not SQL" in out


def test_an_acceptance_covers_only_its_own_parameter(report, tmp_path, capsys):
    judged = tmp_path / "accepted.toml"
    judged.write_text(ACCEPTED_SQL)
    assert dast_verdict.main(report(vulnerabilities=sql_on("email")), judged) == 1
    assert "BLOCKS" in capsys.readouterr().out


def test_every_accepted_finding_in_the_repository_gives_its_reason():
    judged = dast_verdict.accepted()
    assert judged and all(len(reason) > 40 for reason in judged.values())
