"""Settings and secrets shared by every part that reads the config: a TOML table into a settings dataclass, with
the exact key named when it is wrong, and a secret read from its ``*_file`` / ``*_env`` key (docs/architecture.md,
"Contracts"). Connectors, the config loader and webhooks use the same rules, so they live below all of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from syncd.common.errors import ConfigError, ConnectorError
from syncd.common.redaction import remember

T = typing.TypeVar("T")


def parse_settings(settings_type: type[T], table: Mapping[str, Any], where: str, also_known: Iterable[str] = ()) -> T:
    """Build a settings dataclass from a TOML table, naming the exact key that is unknown or of the wrong type.

    ``where`` is the dotted location of the table in the config file (``sources[2]``), so an error reads
    ``sources[2].page_size: expected an integer, got "a lot"``. An unknown key is answered with every key valid
    there (the dataclass's and ``also_known``, the keys a caller reads from the same table itself) and the closest
    one: ``sources[0].schedul: unknown key; did you mean 'schedule'? (known keys: ...)``.
    """
    fields = {f.name: f for f in dataclasses.fields(settings_type)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(settings_type)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        known = sorted(set(fields) | set(also_known))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}.{unknown[0]}: unknown key{hint} (known keys: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, value in table.items():
        values[name] = _check_type(value, hints[name], f"{where}.{name}")
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key is missing")
    try:
        return settings_type(**values)
    except ConfigError as error:  # a Settings.__post_init__ check names the key; say which table it is in
        raise ConfigError(f"{where}.{error}") from None


_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
    tuple: "a list",
}


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to ``hint`` (lists to tuples) or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError as error:
                problems.append(str(error))
        raise ConfigError(problems[0] if len(problems) == 1 else f"{where}: unexpected value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        items = [_check_type(item, item_hint, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint is int and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_TYPE_WORDS.get(hint, hint.__name__)}, got {value!r}")
    return value


def read_secret(settings: Any, name: str, source: str) -> str | None:
    """Read the secret ``name`` of a source from ``<name>_file`` or the variable ``<name>_env`` names.

    Secrets are never inline in the config; the error names the key to fix, never the value. Every secret read is
    remembered for redaction (:mod:`common.redaction`), so no error text can carry it, even echoed by a server.
    """
    path = getattr(settings, f"{name}_file", None)
    variable = getattr(settings, f"{name}_env", None)
    if path:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
            remember(secret)
            return secret
        except OSError as error:
            raise ConnectorError(
                f"source {source}: cannot read {name}_file {path} ({error.strerror}); check the path and its permissions"
            ) from None
    if variable:
        secret = os.environ.get(variable)
        if not secret:
            raise ConnectorError(f"source {source}: environment variable {variable} ({name}_env) is not set")
        remember(secret)
        return secret
    return None
