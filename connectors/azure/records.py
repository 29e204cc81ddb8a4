"""Graph users and groups as connector records, folded over the pages of one delta round.

Rules from "Use delta query to track changes in Microsoft Graph data" and "Get incremental changes for groups":
an object may appear more than once in a round (the later appearance wins) and again in later rounds (replays, so
applying one twice must change nothing); ``@removed`` with reason ``changed`` (restorable from deletedItems) or
``deleted`` (gone) both remove the object here — the member lifecycle suspends first either way; a large group's
``members@delta`` is split over several pages, each repeating the group, and must be merged; a member entry with
``@removed`` has left the group. Members may be users or nested groups (``@odata.type``); devices, contacts and
service principals are not people or teams and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.interface import Delta, GroupRecord, Snapshot, UserRecord

MEMBER_TYPES = frozenset({"#microsoft.graph.user", "#microsoft.graph.group"})
#: Graph user properties that have a field of their own in UserRecord; any other selected one (``userType`` by
#: default, so rules can tell guests from members) is kept in ``attributes``.
_USER_FIELDS = frozenset(
    {"id", "userPrincipalName", "mail", "displayName", "givenName", "surname", "accountEnabled", "department"}
    | {"jobTitle", "employeeId", "manager"}
)
_GROUP_FIELDS = frozenset({"id", "displayName", "members@delta", "@odata.type"})


def user_record(item: dict[str, Any]) -> UserRecord:
    """A Graph user (with the attributes ``Settings.user_attributes`` selects) as a record keyed by its object id.

    ``accountEnabled: false`` makes the record inactive; a property Graph leaves out has never been set (user:
    delta, "Response"). Extra selected attributes go to ``attributes`` unchanged.
    """
    extra = {k: v for k, v in item.items() if k not in _USER_FIELDS and "@" not in k}
    user_name = item.get("userPrincipalName") or item["id"]
    return UserRecord(
        key=item["id"],
        user_name=str(user_name),
        email=_text(item.get("mail")),
        external_id=_text(item.get("employeeId")),
        display_name=_text(item.get("displayName")),
        given_name=_text(item.get("givenName")),
        family_name=_text(item.get("surname")),
        active=item.get("accountEnabled") is not False,
        department=_text(item.get("department")),
        title=_text(item.get("jobTitle")),
        employee_number=_text(item.get("employeeId")),
        manager_key=_manager(item),
        attributes=extra,
    )


def _manager(item: dict[str, Any]) -> str | None:
    """The object id of the user's manager from ``manager@delta`` (relationships are annotations ``name@delta``;
    an entry with ``@removed`` took the manager away). Absent: no manager — the default response carries every
    selected property and relationship, not only the changed ones (user: delta, "Response")."""
    entries = item.get("manager@delta")
    if not isinstance(entries, list):
        return None
    alive = [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str) and "@removed" not in e]
    return alive[-1] if alive else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class UserFold:
    """The users of one round: the last word on each object id wins."""

    users: dict[str, UserRecord] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)

    def add(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            key = item["id"]
            if "@removed" in item:
                self.users.pop(key, None)
                self.removed[key] = _reason(item)
            else:
                self.removed.pop(key, None)
                self.users[key] = user_record(item)


@dataclass
class GroupFold:
    """The groups of one round, with each group's ``members@delta`` merged across the pages it spans."""

    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    added: dict[str, set[str]] = field(default_factory=dict)
    left: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)

    def add(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            key = item["id"]
            if "@removed" in item:
                self.properties.pop(key, None)
                self.added.pop(key, None)
                self.left.pop(key, None)
                self.removed[key] = _reason(item)
                continue
            self.removed.pop(key, None)
            self.properties[key] = item
            added = self.added.setdefault(key, set())
            left = self.left.setdefault(key, set())
            for member in item.get("members@delta") or ():
                if not isinstance(member, dict) or not isinstance(member.get("id"), str):
                    continue
                if member.get("@odata.type", "#microsoft.graph.user") not in MEMBER_TYPES:
                    continue
                if "@removed" in member:
                    added.discard(member["id"])
                    left.add(member["id"])
                else:
                    left.discard(member["id"])
                    added.add(member["id"])

    def record(self, key: str, members: frozenset[str] | None) -> GroupRecord:
        item = self.properties[key]
        extra = {k: v for k, v in item.items() if k not in _GROUP_FIELDS and "@" not in k}
        return GroupRecord(
            key=key,
            display_name=str(item.get("displayName") or key),
            member_keys=members,
            attributes=extra,
        )


def _reason(item: dict[str, Any]) -> str:
    removed = item.get("@removed")
    return str(removed.get("reason", "deleted")) if isinstance(removed, dict) else "deleted"


def snapshot(users: UserFold, groups: GroupFold | None, cursor: str) -> Snapshot:
    """A full round: every user and group that exists now, each group with its complete member list."""
    group_records = [] if groups is None else [groups.record(k, frozenset(groups.added[k])) for k in groups.properties]
    return Snapshot(users=list(users.users.values()), groups=group_records, cursor=cursor, complete=True)


def delta(users: UserFold, groups: GroupFold | None, cursor: str) -> Delta:
    """An incremental round: upserts, removals by name, and membership changes rather than member lists."""
    result = Delta(
        users=list(users.users.values()),
        removed_user_keys=sorted(users.removed),
        cursor=cursor,
    )
    if groups is not None:
        result.groups = [groups.record(k, None) for k in groups.properties]
        result.removed_group_keys = sorted(groups.removed)
        result.members_added = {k: set(v) for k, v in groups.added.items() if v and k in groups.properties}
        result.members_removed = {k: set(v) for k, v in groups.left.items() if v and k in groups.properties}
    return result
