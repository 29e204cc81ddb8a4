"""docs/architecture.md, "Layers": each layer's allow-list checked over the transitive import graph of the source
(tests/import_graph.py), so a shortcut across layers fails a test, and the check is shown to catch one of each."""

from __future__ import annotations

import ast
import textwrap

import pytest

from tests import import_graph as ig
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def source():
    modules = ig.parse_modules(ROOT)
    return modules, ig.edges(modules)


def test_every_layer_reaches_only_what_its_allow_list_names(source):
    modules, graph = source
    assert ig.violations(modules, graph) == []


def test_the_domain_reads_no_clock(source):
    modules, _ = source
    assert ig.clock_reads(modules) == []


def test_the_graph_follows_relative_and_importlib_imports(tmp_path):
    (tmp_path / "syncd" / "domain").mkdir(parents=True)
    for package in ("syncd", "syncd/domain"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "syncd" / "domain" / "sneaky.py").write_text(
        textwrap.dedent(
            """
            import importlib

            def load(kind):
                from ..store import models
                importlib.import_module("syncd.service.http_apps")
                return importlib.import_module(f"connectors.{kind}")
            """
        )
    )
    modules = ig.parse_modules(tmp_path, packages=("syncd",))
    assert {"syncd.store.models", "syncd.service.http_apps", "connectors.*"} <= ig.edges(modules)["syncd.domain.sneaky"]
    assert ig.violations(modules, ig.edges(modules)) == [
        "domain: syncd.domain.sneaky reaches <stdlib>:importlib (syncd.domain.sneaky -> <stdlib>:importlib)",
        "domain: syncd.domain.sneaky reaches connectors.* (syncd.domain.sneaky -> connectors.*)",
        "domain: syncd.domain.sneaky reaches syncd.service.http_apps (syncd.domain.sneaky -> syncd.service.http_apps)",
        "domain: syncd.domain.sneaky reaches syncd.store.models (syncd.domain.sneaky -> syncd.store.models)",
    ]


def _planted(source, edge: tuple[str, str], extra_modules: dict[str, set[str]] | None = None) -> list[str]:
    """The violations of the real graph with one import added (and any synthetic modules it goes through)."""
    modules, graph = source
    modules = dict(modules)
    graph = {name: set(targets) for name, targets in graph.items()}
    for name, targets in (extra_modules or {}).items():
        modules[name] = ig.Module(name, frozenset(targets), False, ast.parse(""))
        graph[name] = set(targets)
    graph[edge[0]].add(edge[1])
    return ig.violations(modules, graph)


PLANTED = [
    # connectors: protocol libraries and the connector interface only; never the store, Flask, syncd or scim.
    (("connectors.file", "syncd.store.models"), None, "connectors: connectors.file reaches syncd.store.models"),
    (("connectors.okta.client", "flask"), None, "connectors: connectors.okta.client reaches flask"),
    # domain: nothing that does I/O: no store, no network, no clock-reading module, directly or through another.
    (("syncd.domain.matching", "syncd.store.db"), None, "domain: syncd.domain.matching reaches syncd.store.db"),
    (
        ("syncd.domain.reconcile.rules", "<stdlib>:socket"),
        None,
        "domain: syncd.domain.reconcile.rules reaches <stdlib>:socket",
    ),
    (
        ("syncd.domain.reconcile.planner", "syncd.domain.helper"),
        {"syncd.domain.helper": {"syncd.clock"}},
        "domain: syncd.domain.reconcile.planner reaches syncd.clock "
        "(syncd.domain.reconcile.planner -> syncd.domain.helper -> syncd.clock)",
    ),
    # store: peewee and its own modules only (the old syncd/store/db.py -> connectors.interface shortcut).
    (("syncd.store.db", "connectors.interface"), None, "store: syncd.store.db reaches connectors.interface"),
    (("syncd.store.tx", "syncd.sync.ledger"), None, "store: syncd.store.tx reaches syncd.sync.ledger"),
    # of the domain, the store uses the one identifier folding only.
    (
        ("syncd.store.dialect", "syncd.domain.reconcile.planner"),
        None,
        "store: syncd.store.dialect reaches syncd.domain.reconcile.planner",
    ),
    # scim: store, domain, the sync entry point; never a connector, never the service.
    (("scim.storage", "connectors.ldap"), None, "scim: scim.storage reaches connectors.ldap"),
    (("scim.web", "syncd.service.scheduler"), None, "scim: scim.web reaches syncd.service.scheduler"),
    (("scim.storage", "syncd.sync.apply"), None, "scim: scim.storage imports syncd.sync.apply, not an entry point"),
    # sync and admin do not wire: no HTTP, no service, no CLI.
    (("syncd.sync.apply", "syncd.admin.members"), None, "sync: syncd.sync.apply reaches syncd.admin.members"),
    (("syncd.sync.gather", "flask"), None, "sync: syncd.sync.gather reaches flask"),
    (
        ("syncd.admin.history", "syncd.service.http_apps"),
        None,
        "admin: syncd.admin.history reaches syncd.service.http_apps",
    ),
    # the CLI is commands only: no model, no peewee of its own (its queries live in admin, sync and service).
    (
        ("syncd.cli.orgs", "syncd.store.models"),
        None,
        "cli: syncd.cli.orgs imports syncd.store.models, not an entry point of syncd.store",
    ),
    (("syncd.cli.webhooks", "peewee"), None, "cli: syncd.cli.webhooks imports peewee, not an entry point of peewee"),
    # only the CLI is above the service.
    (("syncd.service.serve", "syncd.cli.plan"), None, "service: syncd.service.serve reaches syncd.cli.plan"),
    # a module no layer owns is a violation by itself.
    (("syncd.cli", "tools.helper"), {"tools.helper": set()}, "tools.helper belongs to no layer"),
]


@pytest.mark.parametrize(("edge", "extra", "expected"), PLANTED, ids=[f"{a}->{b}" for (a, b), _, _ in PLANTED])
def test_a_planted_violation_is_named(source, edge, extra, expected):
    found = _planted(source, edge, extra)
    assert any(line.startswith(expected) for line in found), found


def test_a_planted_clock_read_in_the_domain_is_named(source):
    modules = dict(source[0])
    tree = ast.parse("from datetime import UTC, datetime\n\ndef today():\n    return datetime.now(UTC)\n")
    modules["syncd.domain.when"] = ig.Module("syncd.domain.when", frozenset({"datetime"}), False, tree)
    assert ig.clock_reads(modules) == ["domain: syncd.domain.when reads the clock (datetime.now(), line 4)"]
