"""The import graph of the source and the layer rules checked on it (docs/architecture.md, "Layers").

Every module of ``connectors``, ``scim`` and ``syncd`` is parsed with :mod:`ast`; an edge is an absolute
import, a relative one (resolved against the module's package), the parent packages an import runs, or an
``importlib.import_module(...)`` load: a string literal is that module, an f-string whose tail is chosen at run time
(``f"connectors.{kind}"``) is the node ``connectors.*``, "a connector chosen by kind". A layer's allow-list is
checked against everything its modules reach, transitively, so a shortcut through a third module is caught too.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("connectors", "scim", "syncd")
STDLIB = "<stdlib>"
"""An allow-list entry standing for any module of the standard library."""

# Longest prefix wins. The top of ``syncd`` (the package, config, clock, logs) is the kernel every layer may use.
LAYER_OF = {
    "connectors": "connectors",
    "syncd": "kernel",
    "syncd.common": "common",
    "syncd.domain": "domain",
    "syncd.store": "store",
    "syncd.sync": "sync",
    "syncd.admin": "admin",
    "syncd.demo": "admin",
    "syncd.demo_data": "admin",
    "scim": "scim",
    "syncd.service": "service",
    "syncd.cli": "cli",
    "syncd.__main__": "cli",
}

# The standard library the domain may use: values and text, nothing that reads a file, a socket, the environment
# or the clock (``datetime`` is there for its types; reading the clock is checked in :func:`clock_reads`).
PURE_STDLIB = frozenset(
    [
        "__future__",
        "abc",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "fnmatch",
        "functools",
        "hashlib",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "typing",
        "unicodedata",
    ]
)

# syncd.common sits inside the syncd package: importing it also runs syncd/__init__.py, which imports nothing (a
# package that imports nothing carries no dependency, see _allowed).
_COMMON = frozenset({"syncd.common", STDLIB})
_CONNECTORS = _COMMON | {"connectors", "ldap3", "pyasn1", "msal", "requests", "jwt", "cryptography"}
_DOMAIN = PURE_STDLIB | {"syncd.domain"}
# The store raises the shared ConfigError for a bad database URL (syncd.common imports the standard library only),
# and folds stored identifiers with the domain's one folding (syncd.domain.folding imports unicodedata only).
_STORE = _COMMON | {"syncd.store", "syncd.domain.folding", "peewee", "playhouse", "psycopg2"}
# config loads each source kind's Settings by name (connectors.*) and checks cron expressions with apscheduler;
# counters holds the event counters any layer may bump.
_KERNEL = _COMMON | {"syncd.config", "syncd.clock", "syncd.logs", "syncd.counters", "connectors.*", "apscheduler"}
_KERNEL |= {"prometheus_client"}
# The sync layer reads connector records (connectors.interface) and loads a source's connector by kind.
_SYNC = _KERNEL | _STORE | _DOMAIN | {"syncd.sync", "connectors.interface"}
_ADMIN = _SYNC | {"syncd.admin", "syncd.demo", "syncd.demo_data"}
# SCIM: the store, the domain and the sync entry point for SCIM writes (with what they reach), bearer tokens from
# admin; never a connector by name (``connectors.*`` is the config's and the pipeline's load by kind).
_SCIM = _SYNC | {"scim", "syncd.admin.tokens", "flask", "werkzeug", "pydantic", "scim2_models", "scim2_server"}
_SCIM |= {"email_validator"}
_SERVICE = _ADMIN | _SCIM | {"syncd.service", "cheroot", "requests"}
# Only the CLI loads its commands by name (syncd.cli.*) and may name a connector (none does today).
_CLI = _SERVICE | {"syncd.cli", "syncd.cli.*", "connectors"}

ALLOWED: Mapping[str, frozenset[str]] = {
    "common": _COMMON,
    "connectors": _CONNECTORS,
    "domain": _DOMAIN,
    "store": _STORE,
    "kernel": _KERNEL,
    "sync": frozenset(_SYNC),
    "admin": frozenset(_ADMIN),
    "scim": frozenset(_SCIM),
    "service": frozenset(_SERVICE),
    "cli": frozenset(_CLI),
}

# Where a layer may enter another one by its own imports (what lies behind is then allowed by the list above):
# SCIM enters sync through the SCIM-write entry point (pipeline.reconcile_touched), org lookups and the pushed
# source's run bookkeeping (source_runs.pushed) only. The CLI is
# commands only: it runs no query, so it names no model, no peewee and no driver itself; of the store it uses the
# "database unavailable" error (db) and the schema version (migrations) only.
ENTRY_POINTS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "scim": {
        "syncd.sync": frozenset({"syncd.sync", "syncd.sync.pipeline", "syncd.sync.orgs", "syncd.sync.source_runs"})
    },
    "cli": {
        "syncd.store": frozenset({"syncd.store", "syncd.store.db", "syncd.store.migrations"}),
        "peewee": frozenset(),
        "playhouse": frozenset(),
        "psycopg2": frozenset(),
    },
}


@dataclass(frozen=True)
class Module:
    name: str
    imports: frozenset[str]
    is_package: bool
    tree: ast.Module


def layer_of(name: str) -> str | None:
    best = None
    for prefix, layer in LAYER_OF.items():
        if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return best[1] if best else None


def parse_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Module]:
    """Every module under ``root``'s ``packages``, by dotted name, with the names it imports."""
    found: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found[name] = Module(name, frozenset(_imports(tree, name, is_package)), is_package, tree)
    return found


def _imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            # ``from pkg import sub`` may load the module pkg.sub; kept only when such a module exists (see edges).
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
            elif isinstance(argument, ast.JoinedStr) and argument.values:
                head = argument.values[0]
                if isinstance(head, ast.Constant) and isinstance(head.value, str):
                    names.add(head.value.rstrip(".") + ".*")
    return names


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module" or func.attr == "__import__"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def edges(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Module → the nodes it imports: modules of the source (with the parent packages an import runs), the top
    names of other libraries (``peewee``), ``<stdlib>:name`` for the standard library, ``pkg.*`` for a load by name."""
    graph: dict[str, set[str]] = {}
    for module in modules.values():
        targets: set[str] = set()
        for name in module.imports:
            top = name.split(".")[0]
            if name.endswith(".*"):
                targets.add(name)
            elif top in PACKAGES or name in modules:
                if name not in modules and name.rpartition(".")[0] in modules:
                    continue  # ``from pkg import attribute``: the attribute is no module; pkg is counted itself
                parts = name.split(".")
                targets.update(
                    ".".join(parts[: i + 1]) for i in range(len(parts)) if ".".join(parts[: i + 1]) in modules
                )
                if name not in modules:
                    targets.add(name)  # a module of ours that does not exist: reported as it is
            elif top in sys.stdlib_module_names:
                targets.add(f"{STDLIB}:{top}")
            elif name:
                targets.add(top)
        targets.discard(module.name)
        graph[module.name] = targets
    return graph


def _allowed(node: str, allowed: frozenset[str], modules: Mapping[str, Module]) -> bool:
    if node.startswith(STDLIB + ":"):
        return STDLIB in allowed or node.split(":", 1)[1] in allowed
    if node.endswith(".*"):
        return node in allowed
    module = modules.get(node)
    if module is not None and module.is_package and not module.imports:
        return True  # a package whose __init__ imports nothing carries no dependency
    return any(node == entry or node.startswith(entry + ".") for entry in allowed if not entry.endswith(".*"))


def violations(
    modules: Mapping[str, Module], graph: Mapping[str, set[str]], allowed: Mapping[str, frozenset[str]] = ALLOWED
) -> list[str]:
    """One line per module that reaches a node its layer's allow-list does not name, with the path that gets there."""
    found: list[str] = []
    for name in sorted(modules):
        layer = layer_of(name)
        if layer is None:
            found.append(f"{name} belongs to no layer")
            continue
        for prefix, entries in ENTRY_POINTS.get(layer, {}).items():
            for target in sorted(graph.get(name, ())):
                if (target == prefix or target.startswith(prefix + ".")) and target not in entries:
                    found.append(f"{layer}: {name} imports {target}, not an entry point of {prefix}")
        via: dict[str, str | None] = {name: None}
        queue = deque([name])
        while queue:
            current = queue.popleft()
            for target in sorted(graph.get(current, ())):
                if target in via:
                    continue
                via[target] = current
                if not _allowed(target, allowed[layer], modules):
                    found.append(f"{layer}: {name} reaches {target} ({' -> '.join(_path(via, target))})")
                    continue
                if target in graph:
                    queue.append(target)
    return found


def _path(via: Mapping[str, str | None], node: str) -> list[str]:
    path = [node]
    while (previous := via[path[-1]]) is not None:
        path.append(previous)
    return path[::-1]


CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
CLOCK_READS |= {("time", name) for name in ("time", "monotonic", "perf_counter", "time_ns", "localtime", "gmtime")}


def clock_reads(modules: Mapping[str, Module], layer: str = "domain") -> list[str]:
    """Calls that read the clock (``datetime.now()``, ``time.time()``, ...) in the modules of ``layer``."""
    found = []
    for name, module in sorted(modules.items()):
        if layer_of(name) != layer:
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
                if (owner_name, node.func.attr) in CLOCK_READS:
                    found.append(
                        f"{layer}: {name} reads the clock ({owner_name}.{node.func.attr}(), line {node.lineno})"
                    )
    return found
