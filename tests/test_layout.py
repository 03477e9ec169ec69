"""Each blueprint's views stand alone: what two blueprints share lives in portal/web itself."""

from __future__ import annotations

import ast

from portal import ROOT

WEB = ROOT / "portal/web"
BLUEPRINTS = sorted(p.name for p in WEB.iterdir() if (p / "__init__.py").is_file())


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module a source imports, at the top or inside a function, relative ones resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            if base.count(".") == 2:  # `from portal.web.customer import way_in`: the module
                found.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.add(base)
    return found


def foreign_view_imports(source: str, package: str) -> list[str]:
    """What a module of this package imports from another blueprint, other than its forms."""
    own = package.split(".")[2]
    found = []
    for module in sorted(_imported_modules(source, package)):
        parts = module.split(".")
        if len(parts) < 3 or parts[:2] != ["portal", "web"] or parts[2] not in BLUEPRINTS:
            continue
        if parts[2] != own and parts[3:4] != ["forms"]:
            found.append(module)
    return found


def test_no_blueprint_imports_another_blueprints_views():
    offenders = {}
    for blueprint in BLUEPRINTS:
        for path in sorted((WEB / blueprint).rglob("*.py")):
            package = ".".join(path.parent.relative_to(ROOT).parts)
            if imports := foreign_view_imports(path.read_text(), package):
                offenders[str(path.relative_to(ROOT))] = imports
    assert offenders == {}, "move what they share to a module of portal/web (e.g. navigation.py)"


def test_the_layout_check_finds_an_import_of_another_blueprints_views():
    # How staff borrowed the customer's safe_next before it moved to portal/web/navigation.py.
    assert foreign_view_imports(
        "from portal.web.customer.views import safe_next", "portal.web.staff"
    ) == ["portal.web.customer.views"]
    assert foreign_view_imports("from portal.web.customer import way_in", "portal.web.admin") == [
        "portal.web.customer.way_in"
    ]
    assert foreign_view_imports("import portal.web.customer", "portal.web.admin") == [
        "portal.web.customer"
    ]
    assert foreign_view_imports(
        "def f():\n    from ..staff.views import bp", "portal.web.admin"
    ) == ["portal.web.staff.views"]
    # A blueprint's own modules, another's forms and the modules they share are fine.
    for line, package in (
        ("from portal.web.customer.blueprint import bp", "portal.web.customer"),
        ("from . import common", "portal.web.customer"),
        ("from portal.web.staff.forms import ActionForm", "portal.web.admin"),
        ("from portal.web.staff import forms", "portal.web.admin"),
        ("from portal.web.navigation import safe_next", "portal.web.staff"),
        ("from portal.web import limits", "portal.web.staff"),
    ):
        assert foreign_view_imports(line, package) == [], line
