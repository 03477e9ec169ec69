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


# Words that make a name hold a secret (or a value derived from one) for the `==` rule below:
# the checklist's list (OPS-02) with the spellings the portal uses. Not "key": the names that say
# key here are identifiers (`key_id`, `dedupe_key`, `segment.key`), and keys themselves are never
# compared, only used to sign.
SECRET_WORDS = frozenset(
    {
        "token",
        "code",
        "digest",
        "hexdigest",
        "mac",
        "hmac",
        "hash",
        "signature",
        "sig",
        "nonce",
        "secret",
        "password",
        "seed",
        "otp",
        "totp",
        "sid",
    }
)


def _names_a_secret(node: ast.expr) -> bool:
    """A name, attribute or `.digest()`-like call whose words include a secret word."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        identifier = node.id
    elif isinstance(node, ast.Attribute):
        identifier = node.attr
    else:
        return False
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier).lower().split("_")
    return any(word in SECRET_WORDS or word.removesuffix("s") in SECRET_WORDS for word in words)


def _safe_comparison(operands: list[ast.expr]) -> bool:
    """Comparisons that `==` may make on a secret without telling anything by their time."""
    for operand in operands:
        # Against None, an empty value or a number (an HTTP status `code`): nothing secret is
        # matched character by character. (A hard-coded password string is bandit's B105.)
        if isinstance(operand, ast.Constant) and (
            operand.value in (None, "", b"") or isinstance(operand.value, int)
        ):
            return True
        # `Model.column == value` builds SQL: the database looks the row up by its index, and
        # what is looked up is a digest of a high-entropy value (or a rate-limited reference).
        if (
            isinstance(operand, ast.Attribute)
            and isinstance(operand.value, ast.Name)
            and operand.value.id[:1].isupper()
        ):
            return True
    return False


def _reason_above(lines: list[str], lineno: int) -> bool:
    """An exception stands only with its reason in a comment on the line right above."""
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return above.startswith("#") and len(above) > 20


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
            if _reason_above(lines, node.lineno):
                continue
            found.append(f"{line}: csrf.exempt (every POST carries a token; CSRF-01)")
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            # `==` stops at the first differing character, so its time tells an attacker how much
            # of a guessed token, code or digest was right; hmac.compare_digest does not.
            operands = [node.left, *node.comparators]
            if not any(_names_a_secret(operand) for operand in operands):
                continue
            if _safe_comparison(operands) or _reason_above(lines, node.lineno):
                continue
            found.append(f"{line}: == on a secret; use hmac.compare_digest (OPS-02)")
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
        "if token == expected: pass",
        "ok = member.invite_nonce != nonce",
        "same = password == confirm",
        "if challenge.code_digest == _digest(code): pass",
        "if hmac.new(k, body, 'sha256').hexdigest() == header: pass",
        "valid = typed == member.totpSeed",
        "if event.prev_hash != prev: pass",
        "assert 0 < len(x) and received_signature == sig",
        "# ok\nif token == expected: pass",  # a comment too short to be a reason
    ],
)
def test_the_custom_code_rules_catch_what_they_forbid(source):
    assert code_rule_violations("portal/planted.py", source)
    assert template_rule_violations("x.html", "<p>{{ name | safe }}</p>")


@pytest.mark.parametrize(
    "source",
    [
        "ok = hmac.compare_digest(token.encode(), expected.encode())",
        "row = select(Notice).where(Notice.reference_code == code)",
        "retry = exc.code == 429",
        "missing = token is None or token == ''",
        "current = event.key_id == LEGACY",
        "# A step's id names a kind of step; nothing secret.\nx = s.id == CHANGE_PASSWORD",
    ],
)
def test_the_secret_comparison_rule_lets_through_what_tells_nothing(source):
    assert code_rule_violations("portal/planted.py", source) == []
