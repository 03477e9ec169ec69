"""docs/security.md accounts for every checklist row, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from portal import ROOT

DOC = ROOT / "docs/security.md"
# The checklist lives beside the repository (shared/reference/); its 59 ids are kept here too so
# that the check runs wherever the suite runs.
CHECKLISTS = [up / "shared/reference/security-checklist.md" for up in ROOT.parents[:2]]
IDS = (
    [f"AUTH-0{n}" for n in range(1, 10)]
    + [f"RST-0{n}" for n in range(1, 8)]
    + [f"OTP-0{n}" for n in range(1, 8)]
    + [f"SES-0{n}" for n in range(1, 8)]
    + [f"AZ-0{n}" for n in range(1, 7)]
    + [f"CSRF-0{n}" for n in range(1, 4)]
    + [f"VAL-0{n}" for n in range(1, 5)]
    + [f"DATA-0{n}" for n in range(1, 6)]
    + [f"HDR-0{n}" for n in range(1, 3)]
    + [f"LOG-0{n}" for n in range(1, 5)]
    + [f"NTF-0{n}" for n in range(1, 3)]
    + [f"OPS-0{n}" for n in range(1, 4)]
)
ROW_ID = re.compile(r"^[A-Z]+-\d{2}$")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
OPEN = re.compile(r"OPEN: being closed under finding [1-7]\b")


def table_rows(text: str) -> dict[str, list[str]]:
    """{row id: its cells} for every table line whose first cell is a checklist id."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if ROW_ID.match(cells[0]):
            assert cells[0] not in rows, f"{cells[0]} appears twice"
            rows[cells[0]] = cells
    return rows


def defined_tests(path: Path) -> set[str]:
    """The test functions a test file defines (at module level or in a class)."""
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def problems(text: str, root: Path) -> list[str]:
    """Everything wrong with a security document's table, in words."""
    found = []
    rows = table_rows(text)
    if list(rows) != IDS:
        missing = [i for i in IDS if i not in rows]
        extra = [i for i in rows if i not in IDS]
        found.append(f"rows missing {missing}, unknown {extra}, or out of order")
    known: dict[str, set[str]] = {}
    for row_id, cells in rows.items():
        if len(cells) != 4:
            found.append(f"{row_id}: {len(cells)} cells, not 4")
            continue
        proof = cells[2]
        refs = TEST_REF.findall(proof)
        if not (
            refs
            or proof.startswith("not applicable because ")
            or OPEN.search(proof)
            or proof.startswith("GAP: ")
        ):
            found.append(f"{row_id}: names no test, no reason it does not apply, and no finding")
        for file, name in TEST_REF.findall(" ".join(cells)):
            if file not in known:
                path = root / file
                known[file] = defined_tests(path) if path.is_file() else set()
            if name not in known[file]:
                found.append(f"{row_id}: {file}::{name} does not exist")
    return found


def test_the_security_document_accounts_for_every_row_with_tests_that_exist():
    assert problems(DOC.read_text(encoding="utf-8"), ROOT) == []


def test_the_kept_ids_are_the_checklists_ids():
    found = [path for path in CHECKLISTS if path.is_file()]
    if not found:
        pytest.skip("shared/reference/security-checklist.md is not beside this checkout")
    text = found[0].read_text(encoding="utf-8")
    assert len(IDS) == 59
    assert re.findall(r"^\| ([A-Z]+-\d{2}) \|", text, re.MULTILINE) == IDS


def test_the_check_finds_a_missing_row_an_unknown_test_and_an_unproved_row():
    rows = DOC.read_text(encoding="utf-8").splitlines()
    broken = "\n".join(
        line.replace("test_tampered_link`", "test_no_such_test`")
        .replace("| AUTH-09 |", "| AUTH-10 |")
        .replace(
            "`tests/test_web_security.py::test_error_pages_are_generic_and_carry_a_reference`, ",
            "",
        )
        for line in rows
        if not line.startswith("| OPS-03 |")
    )
    broken = re.sub(
        r"^\| LOG-01 \|([^|]*)\|[^|]*\|", r"| LOG-01 |\1| trust us |", broken, flags=re.M
    )
    found = "\n".join(problems(broken, ROOT))
    assert "'AUTH-09'" in found and "'OPS-03'" in found and "'AUTH-10'" in found
    assert "test_verification.py::test_no_such_test does not exist" in found
    assert "LOG-01: names no test" in found
