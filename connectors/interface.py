"""The connector interface: the records a directory read produces, and how a connector is configured.

A connector's :meth:`Connector.read` returns either a :class:`Snapshot` (every user and group the source holds,
with ``complete`` saying whether the read saw all of it) or a :class:`Delta` (upserts and explicit removals since
a cursor), each carrying the cursor to store once the changes are committed. Only a complete snapshot implies that
someone is absent (docs/architecture.md, invariant 1).

A connector may also offer ``stream(cursor)``: a :class:`Snapshot` whose ``users`` is an iterator, consumed once,
so that a large directory is staged without ever being held whole. Its ``complete``, ``problems`` and ``cursor`` are
final only once ``users`` is exhausted and say "incomplete" until then, so a consumer judges the read only after
the last record (the stager stages, then judges, then removes; planning comes after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncd.common.errors import ConfigError, ConnectorError
from syncd.common.settings import parse_settings, read_secret

__all__ = [
    "DESCRIPTIVE_FIELDS",
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


DESCRIPTIVE_FIELDS = (
    "external_id",
    "display_name",
    "given_name",
    "family_name",
    "department",
    "title",
    "employee_number",
)
"""The optional text fields of a :class:`UserRecord` that describe the person (RFC 7643 §4.1, §4.3): the one list
that sources map, the store keeps on each identity and the planner reads, so a new attribute is added here once."""


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
    incomplete snapshot still updates what it saw, but implies no absence. A streamed snapshot's ``users`` is an
    iterator (see the module docstring).
    """

    users: Iterable[UserRecord]
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


class Connector(Protocol):
    """What every connector module provides, under the name ``Connector``.

    ``__init__(name, settings)`` receives the source's name (for error messages) and its parsed settings object;
    ``read(None)`` returns a full :class:`Snapshot` whose ``users`` is a list; ``read(cursor)`` may return a
    :class:`Delta` or, when the cursor is no longer usable (Graph 410, a DC restore), a full snapshot instead. An
    optional ``stream(cursor)`` returns the same read with ``users`` streamed (see the module docstring).
    """

    def read(self, cursor: str | None) -> ReadResult: ...
