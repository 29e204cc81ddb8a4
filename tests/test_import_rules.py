"""docs/architecture.md, "Layers": checked on the source, so a shortcut across layers fails a test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _imports(package: str) -> dict[str, set[str]]:
    """Every module each file of ``package`` imports (absolute names, at any depth of the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{file} imports {name}"
        for file, names in _imports(package).items()
        for name in names
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # Connectors: protocol in, records out; never the store, Flask, the scheduler or the reconciler.
        ("connectors", ("syncd", "scim", "peewee", "flask", "apscheduler")),
        # The planner is pure: no store, no network, no clock-reading shell, no I/O libraries.
        (
            "syncd/domain/reconcile",
            ("syncd.store", "syncd.clock", "syncd.sync.pipeline", "peewee", "requests", "flask", "os"),
        ),
        # SCIM uses the store and the reconciler's entry point, never a connector.
        ("scim", ("connectors.file", "connectors.ldap", "connectors.okta", "connectors.azure", "apscheduler")),
        # The store is the bottom layer.
        ("syncd/store", ("syncd.sync.pipeline", "syncd.domain.reconcile", "scim", "flask", "requests")),
    ],
)
def test_layers_import_only_what_design_allows(package, forbidden):
    assert _offenders(package, forbidden) == []


def test_the_rule_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text("def f():\n    from syncd.store.models import Member\n")
    monkeypatch.setattr("tests.test_import_rules.ROOT", Path(tmp_path))
    assert _offenders("pkg", ("syncd.store",)) == ["pkg/bad.py imports syncd.store.models"]
