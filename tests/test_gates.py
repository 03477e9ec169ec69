"""CI gates kept honest: bandit finds nothing unjustified, and outgoing services stay on the web."""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
import tomllib

import pytest

from portal import ROOT
from portal.config import ConfigError
from portal.mail.http import post
from portal.mail.smtp import DeliveryError
from portal.services.passwords import is_pwned
from tests.conftest import base_env

NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)")
JUSTIFIED = re.compile(r"^ B\d{3}(, B\d{3})*: \S.{3,}")


@pytest.mark.parametrize(
    "name", ["PORTAL_SMS_URL", "PORTAL_WEBHOOK_URL", "PORTAL_PWNED_PASSWORDS_URL"]
)
def test_a_service_url_that_is_not_on_the_web_is_refused_at_start(database_url, make_app, name):
    env = base_env(database_url, **{name: "file:///etc/passwd", "PORTAL_WEBHOOK_SECRET": "s" * 40})
    with pytest.raises(ConfigError, match=name):
        make_app(env)


def test_an_sms_or_webhook_to_a_local_file_is_refused_without_opening_it(tmp_path):
    target = tmp_path / "never-written"
    with pytest.raises(DeliveryError) as refused:
        post(target.as_uri(), b"{}", {}, timeout=1, what="SMS provider")
    assert refused.value.permanent  # retrying cannot help: it is a configuration error
    assert not target.exists()


def test_a_password_check_never_reads_a_local_file(app, tmp_path):
    # A file that would "answer" the range query with the password's suffix, if urllib read it.
    password = "correct horse battery staple"
    digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
    (tmp_path / digest[:5]).write_text(f"{digest[5:]}:12\n")
    app.config["PWNED_PASSWORDS_URL"] = tmp_path.as_uri()
    app.config["PWNED_UNREACHABLE_POLICY"] = "accept"
    assert not is_pwned(password)


def test_every_nosec_names_its_check_and_gives_a_reason():
    unjustified = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = NOSEC.search(line)
            if found and not JUSTIFIED.match(found["rest"]):
                unjustified.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert unjustified == []


@pytest.mark.slow
def test_bandit_finds_no_medium_or_high_issue_in_the_portal():
    pytest.importorskip("bandit", reason="bandit is a dev dependency (make install)")
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-c", "pyproject.toml", "-r", "portal", "-ll"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout


def _pins(lines) -> dict[str, str]:
    """{normalised name: version} of `name[extras]==version` lines."""
    found = {}
    for line in lines:
        match = re.match(r"^\s*\"?([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s\"\\;]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return found


def test_the_lock_file_pins_every_dependency_at_its_pyproject_version_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins([*project["dependencies"], *project["optional-dependencies"]["dev"]])
    lock = (ROOT / "requirements.lock").read_text()
    locked = _pins(lock.splitlines())
    assert {name: locked.get(name) for name in wanted} == wanted
    assert unhashed_pins(lock) == []


def unhashed_pins(lock: str) -> list[str]:
    """The pins of a lock file without a hash, in every section of it (pip-compile puts pip, once
    pip-audit needs it, in a section of its own after a blank line)."""
    entries = re.split(r"\n(?=[a-z0-9])", lock)
    return [
        entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry
    ]


def test_the_scanner_lock_pins_every_package_with_hashes():
    # .venv-tools (make tools) installs wapiti from it with --require-hashes.
    lock = (ROOT / "tools/requirements-tools.lock").read_text()
    assert "wapiti3==3.3.2" in lock
    assert unhashed_pins(lock) == []


def test_a_pin_without_a_hash_is_found_in_any_section_of_the_lock():
    lock = (ROOT / "requirements.lock").read_text()
    planted = lock.replace("\nflask==", "\nplanted-unhashed==6.6.6\nflask==", 1)
    assert unhashed_pins(planted) == ["planted-unhashed==6.6.6"]


# The checklist's custom rules (OPS-02) that bandit has no check for, each with its reason.
def code_rule_violations(name: str, source: str) -> list[str]:
    """What a Python source does that the portal forbids, as `name:line: why` strings."""
    found = []
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        line = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr == "exempt":
            # An exemption stands only with its reason in the comment right above it (the CSP
            # report route: browsers post reports without a token, and it changes nothing).
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if above.startswith("#") and len(above) > 20:
                continue
            found.append(f"{line}: csrf.exempt (every POST carries a token; CSRF-01)")
        elif isinstance(node, ast.Attribute) and node.attr == "populate_obj":
            found.append(f"{line}: populate_obj binds every field (mass assignment; AZ-04)")
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg is None and "request" in ast.unparse(keyword.value):
                    found.append(f"{line}: **request... binds what the client sent (AZ-04)")
                elif keyword.arg is None and ast.unparse(keyword.value).endswith(".data"):
                    found.append(f"{line}: **form.data binds every field (AZ-04)")
                elif keyword.arg == "valid_window":
                    found.append(f"{line}: valid_window widens TOTP (OTP-04)")
                elif keyword.arg == "debug" and ast.unparse(keyword.value) == "True":
                    found.append(f"{line}: debug=True is a remote shell (LOG-01)")
        elif isinstance(node, ast.Import | ast.ImportFrom) and name != "portal/backoff.py":
            modules = [node.module] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in getattr(node, "names", [])]
            if "random" in modules and (isinstance(node, ast.Import) or node.module == "random"):
                found.append(f"{line}: random is not for secrets; use secrets (DATA-03)")
    return found


def template_rule_violations(name: str, source: str) -> list[str]:
    """A `|safe` in a template: only portal/markdown.py marks HTML safe (VAL-01)."""
    return [
        f"{name}:{source.count(chr(10), 0, m.start()) + 1}: |safe in a template (VAL-01)"
        for m in re.finditer(r"\|\s*safe\b", source)
    ]


def test_the_custom_code_rules_hold_in_the_portal():
    found = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        found += code_rule_violations(str(path.relative_to(ROOT)), path.read_text())
    for path in sorted((ROOT / "templates").rglob("*.html")):
        found += template_rule_violations(str(path.relative_to(ROOT)), path.read_text())
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "@csrf.exempt\ndef hook(): pass",
        "form.populate_obj(customer)",
        "Customer(**request.form)",
        "StaffMember(**form.data)",
        "pyotp.TOTP(s).verify(code, valid_window=2)",
        "app.run(debug=True)",
        "import random",
        "from random import choice",
    ],
)
def test_the_custom_code_rules_catch_what_they_forbid(source):
    assert code_rule_violations("portal/planted.py", source)
    assert template_rule_violations("x.html", "<p>{{ name | safe }}</p>")
