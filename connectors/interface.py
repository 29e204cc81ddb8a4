"""The connector interface: the records a directory read produces, and how a connector is configured.

A connector's :meth:`Connector.read` returns either a :class:`Snapshot` (every user and group the source holds,
with ``complete`` saying whether the read saw all of it) or a :class:`Delta` (upserts and explicit removals since
a cursor), each carrying the cursor to store once the changes are committed. Only a complete snapshot implies that
someone is absent (docs/architecture.md, invariant 1).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from connectors.errors import ConfigError, ConnectorError
from connectors.redaction import remember

__all__ = [
    "ConfigError",
    "Connector",
    "ConnectorError",
    "Delta",
    "GroupRecord",
    "ReadResult",
    "Snapshot",
    "UserRecord",
    "parse_settings",
    "read_secret",
]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person as one source sees them.

    ``key`` is the source's stable id (Graph object id, Okta id, LDAP entryUUID or objectGUID, SCIM id); the other
    fields follow the SCIM core and enterprise User schemas (RFC 7643 §4.1, §4.3). ``manager_key`` is the stable id
    of the manager's record in the same source. ``groups`` optionally names the keys of the groups the user is a
    direct member of, for sources (HR files, ``memberOf``) that state membership on the person rather than the group.
    """

    key: str
    user_name: str
    email: str | None = None
    external_id: str | None = None
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    active: bool = True
    department: str | None = None
    title: str | None = None
    employee_number: str | None = None
    manager_key: str | None = None
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A directory group as one source sees it.

    ``member_keys`` holds the stable keys of the direct members, users or nested groups alike; ``None`` means the
    read did not look at membership (a delta that changed only the name), so the staged members stay as they are.
    """

    key: str
    display_name: str
    external_id: str | None = None
    member_keys: frozenset[str] | None = frozenset()
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Snapshot:
    """Every user and group of a source, as one read saw them.

    ``complete`` is false when any page, row or request failed; ``problems`` then says what (one line each). An
    incomplete snapshot still updates what it saw, but implies no absence.
    """

    users: list[UserRecord]
    groups: list[GroupRecord]
    cursor: str | None = None
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the source could and could not see on this read (one line each), kept on the source's run record."""


@dataclass(slots=True)
class Delta:
    """Changes since a cursor: upserts and explicit removals, and nothing implied.

    ``members_added`` / ``members_removed`` map a group key to member keys added or removed, for protocols that
    report membership changes rather than whole member lists (Graph ``members@delta``, Okta membership events).
    A removed user is suspended first and deprovisioned only after the org's grace days, so a restorable deletion
    (Graph ``@removed`` reason ``changed``) and a hard one are both plain removals here.
    """

    users: list[UserRecord] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)
    removed_user_keys: list[str] = field(default_factory=list)
    removed_group_keys: list[str] = field(default_factory=list)
    members_added: dict[str, set[str]] = field(default_factory=dict)
    members_removed: dict[str, set[str]] = field(default_factory=dict)
    cursor: str | None = None
    present_user_keys: frozenset[str] | None = None
    """When set, every user key in the source's scope now (a census of keys only): a stored user of this source
    not listed left the scope and is removed, which is how leavers show when deletions are hidden from the reader."""
    present_group_keys: frozenset[str] | None = None
    blind_to_deletions: str | None = None
    """Why this delta cannot know who left (deletions hidden, no census this time): the run is then not complete,
    though what it did see is applied and the cursor moves on."""
    notes: list[str] = field(default_factory=list)


ReadResult = Snapshot | Delta
T = typing.TypeVar("T")


class Connector(Protocol):
    """What every connector module provides, under the name ``Connector``.

    ``__init__(name, settings)`` receives the source's name (for error messages) and its parsed settings object;
    ``read(None)`` returns a full :class:`Snapshot`; ``read(cursor)`` may return a :class:`Delta` or, when the
    cursor is no longer usable (Graph 410, a DC restore), a full snapshot instead.
    """

    def read(self, cursor: str | None) -> ReadResult: ...


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
    remembered for redaction (:mod:`connectors.redaction`), so no error text can carry it, even echoed by a server.
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
