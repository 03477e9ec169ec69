"""The Spanish catalogue: it compiles, everything a customer reads is translated, the .mo is fresh.

After changing text: `make translations`, translate what these tests name, compile again.
"""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import denormalize, read_po

from portal import ROOT

PO = ROOT / "portal/translations/es/LC_MESSAGES/messages.po"
MO = PO.with_suffix(".mo")
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}

# What customers (and anyone not signed in) read. Staff and operator text may stay English.
CUSTOMER_TEMPLATES = (
    "templates/base.html",
    "templates/customer",
    "templates/public",
    "templates/emails",
    "templates/errors",
)
CUSTOMER_PYTHON = (
    "portal/web/customer",
    "portal/web/public",
    "portal/web/errors.py",
    "portal/mail/compose.py",
    "portal/models/data_class.py",
    "portal/validation.py",
    # An agent's correction of a contact tells the customer so; both modules were part of
    # services/cases.py, whose every message is translated, until the agents' side moved out.
    "portal/services/agent_tools.py",
    "portal/services/support_desk.py",
)
CUSTOMER_VIEWS = ("portal/web/customer", "portal/web/public/views.py")


def _services_behind_customer_pages() -> set[str]:
    """The service modules the customer and public views call: their messages reach customers."""
    found = set()
    for path in _files(CUSTOMER_VIEWS):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "portal.services":
                found.update(f"portal/services/{alias.name}.py" for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "portal.services."
            ):
                found.add(node.module.replace(".", "/") + ".py")
    return {p for p in found if (ROOT / p).is_file()}


def _files(entries) -> list[Path]:
    files = []
    for entry in entries:
        path = ROOT / entry
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".html", ".txt", ".py"))
        else:
            files.append(path)
    return files


def customer_facing_messages() -> dict[str | tuple[str, ...], list[str]]:
    """Every msgid a customer may read, with where it is written (file:line)."""
    found: dict[str | tuple[str, ...], list[str]] = {}
    entries = CUSTOMER_TEMPLATES + CUSTOMER_PYTHON + tuple(_services_behind_customer_pages())
    for path in _files(entries):
        method = "python" if path.suffix == ".py" else "jinja2"
        for lineno, msgid, _comments, _context in extract_from_file(
            method, str(path), keywords=KEYWORDS
        ):
            if isinstance(msgid, tuple):
                msgid = tuple(m for m in msgid if m)  # plural forms (no context used here)
                msgid = msgid if len(msgid) > 1 else msgid[0]
            if msgid:
                found.setdefault(msgid, []).append(f"{path.relative_to(ROOT)}:{lineno}")
    return found


def _catalogue():
    with PO.open("rb") as handle:
        return read_po(handle, locale="es")


def test_the_spanish_catalogue_compiles_with_gnu_msgfmt():
    msgfmt = shutil.which("msgfmt")
    if msgfmt:
        result = subprocess.run(
            [msgfmt, "--check", "--output-file", "/dev/null", str(PO)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return
    # Without GNU gettext (CI installs it): its commonest refusal is a message defined twice,
    # which Babel reads without a word (an obsolete "#~" entry counts too).
    seen: dict[tuple[str, str], int] = {}
    duplicates = []
    for key, line in _message_keys(PO.read_text(encoding="utf-8")):
        if key in seen:
            duplicates.append(f"line {line} repeats line {seen[key]}: {key[1]!r}")
        seen.setdefault(key, line)
    assert not duplicates, "\n".join(duplicates)


def _message_keys(text: str):
    """(msgctxt, msgid) of every entry, obsolete ones included, with its line number."""
    context, msgid, start, field = "", None, 0, None
    parts: dict[str, list[str]] = {"msgctxt": [], "msgid": []}
    for number, raw in enumerate([*text.splitlines(), ""], start=1):
        line = re.sub(r"^#~\s?", "", raw).strip()
        keyword = re.match(r"(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+(\".*\")$", line)
        if keyword:
            field = keyword.group(1)
            if field == "msgctxt" or (field == "msgid" and not parts["msgctxt"]):
                start = number
            if field in parts:
                parts[field] = [keyword.group(2)]
            continue
        if line.startswith('"') and field in parts:
            parts[field].append(line)
            continue
        if not line and parts["msgid"]:
            context = denormalize("\n".join(parts["msgctxt"])) if parts["msgctxt"] else ""
            msgid = denormalize("\n".join(parts["msgid"]))
            if msgid:
                yield (context, msgid), start
            parts, field = {"msgctxt": [], "msgid": []}, None


def test_every_string_a_customer_reads_has_a_spanish_translation():
    catalogue = _catalogue()
    missing = []
    for msgid, places in sorted(customer_facing_messages().items(), key=lambda i: i[1][0]):
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalogue.get(key)
        strings = message.string if message is not None else ""
        strings = strings if isinstance(strings, tuple) else (strings,)
        if message is None:
            missing.append(f"{places[0]}: not in the catalogue (run make translations): {key!r}")
        elif message.fuzzy or not all(strings):
            state = "fuzzy" if message.fuzzy else "untranslated"
            missing.append(f"{places[0]}: {state}: {key!r}")
    assert not missing, f"{len(missing)} customer strings lack Spanish:\n" + "\n".join(missing)


def test_translations_keep_every_placeholder():
    problems = [
        f"{message.id!r}: {error}"
        for message, errors in _catalogue().check()
        for error in errors
        if not message.fuzzy
    ]
    assert not problems, "\n".join(problems)


def test_the_compiled_catalogue_matches_the_po_file():
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)._catalog
    expected = {}
    for message in _catalogue():
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            for index, string in enumerate(message.string):
                if string:
                    expected[(message.id[0], index)] = string
        elif message.string:
            expected[message.id] = message.string
    compiled = {k: v for k, v in compiled.items() if k != ""}  # "" is the header
    stale = sorted(
        repr(k) for k in expected.keys() | compiled.keys() if expected.get(k) != compiled.get(k)
    )
    assert not stale, "run `pybabel compile -d portal/translations`; differs: " + ", ".join(
        stale[:10]
    )
