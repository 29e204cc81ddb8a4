"""Active Directory DirSync ([MS-ADTS] §3.1.1.3.4.1.3, control 1.2.840.113556.1.4.841) as the incremental mode.

One DirSync search over the domain's naming context, repeated while the server says more results wait, returns the
objects changed since the cookie with only their changed attributes: ``name`` and ``parentGUID`` for a rename or a
move, ``isDeleted`` for a tombstone (with Show Deleted, and only to an account allowed to see it), and, with the
incremental-values flag, a group's linked ``member`` changes as ``member;range=1-1`` (added) and
``member;range=0-0`` (removed) instead of the whole list. The cookie is the source's cursor.

Changed users and groups are read again whole (by objectGUID, in batches) because a partial entry cannot become a
record; member deltas become ``members_added`` / ``members_removed``; an object now outside the scope is removed.
A cookie the server refuses makes the caller read in full (logged). Needs the "Replicating Directory Changes"
right on the domain (README, "Active Directory").
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from ldap3.protocol.microsoft import dir_sync_control
from ldap3.utils.conv import escape_bytes

from connectors.interface import Delta
from connectors.ldap import cursor as cursors
from connectors.ldap import leavers
from connectors.ldap.mapping import PendingGroup, PendingUser, Unmappable, normal_dn
from connectors.ldap.reader import LOOKUP_CHUNK, DirectoryReader
from connectors.ldap.vendor import ad

log = logging.getLogger(__name__)

DIRSYNC_OID = "1.2.840.113556.1.4.841"
MAX_BYTES = 1_048_576  # the server's answer size per round (AD caps it at its own MaxReturnedBytes)
_REFUSED = (2, 12, 50, 51, 53)
_MEMBER_DELTA = re.compile(r"^member;range=(?P<state>[01])-[01]$", re.IGNORECASE)
_NOT_A_CHANGE = {"objectguid", "instancetype", "parentguid", "isdeleted"}


def _search_filter(reader: DirectoryReader) -> str:
    # Tombstones lose objectCategory, so they are asked for by isDeleted, whatever the user filter says.
    return f"(|{reader.users_filter}{reader.groups_filter}(isDeleted=TRUE))"


def _attributes(reader: DirectoryReader) -> list[str]:
    names = [*reader.mapping.user_attributes, *reader.mapping.group_attributes, "name", "isDeleted"]
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


class CookieRefused(Exception):
    """The server would not continue from this cookie (another DC, expired, or not a DirSync cookie)."""


def rounds(reader: DirectoryReader, cookie: bytes | None) -> tuple[list[dict[str, Any]], bytes, int]:
    """Every DirSync round from ``cookie`` until the server has no more: (entries, the new cookie, requests)."""
    session = reader.session
    context = leavers.naming_context(reader)
    entries: list[dict[str, Any]] = []
    requests = 0
    while True:
        control = dir_sync_control(True, False, False, False, True, MAX_BYTES, cookie)
        response = session.search(
            "DirSync",
            context,
            _search_filter(reader),
            "sub",
            _attributes(reader),
            [control, (ad.SHOW_DELETED_OID, False, None)],
            accept=_REFUSED,
        )
        requests += 1
        result = session.last_result()
        answer = (result.get("controls") or {}).get(DIRSYNC_OID)
        if result.get("result") != 0 or answer is None:
            raise CookieRefused(f"{result.get('description')} ({result.get('result')}): {result.get('message') or ''}")
        entries.extend(item for item in response if item["type"] == "searchResEntry")
        cookie = answer["value"]["cookie"]
        if not answer["value"]["more_results"]:
            return entries, cookie or b"", requests


def start_position(reader: DirectoryReader) -> dict[str, Any] | None:
    """A cookie for "now", taken before a full read: DirSync from no cookie, its entries dropped."""
    try:
        _, cookie, _ = rounds(reader, None)
    except CookieRefused as error:
        log.warning("DirSync refused a first cookie (%s); the next read is full", error)
        return None
    return {"cookie": cursors.pack(cookie), "since_census": 0}


def changes(
    reader: DirectoryReader, position: dict[str, Any], visibility: leavers.Visibility | None
) -> tuple[Delta, dict[str, Any]] | None:
    try:
        entries, cookie, requests = rounds(reader, cursors.unpack(position.get("cookie")))
    except CookieRefused as error:
        log.warning("DirSync cookie refused (%s); reading fully", error)
        return None
    settings = reader.settings
    deleted: set[str] = set()
    changed: set[str] = set()
    added: dict[str, set[str]] = {}
    removed: dict[str, set[str]] = {}
    for entry in entries:
        key = ad.guid_text(list(entry["raw_attributes"].get("objectGUID") or []))
        if not key:
            continue
        attributes = {name.lower(): values for name, values in entry["attributes"].items() if values not in ([], None)}
        if attributes.get("isdeleted") in (True, [True], "TRUE", ["TRUE"]):
            deleted.add(key)
            continue
        for name, values in attributes.items():
            match = _MEMBER_DELTA.match(name)
            if match is None:
                continue
            if leavers.in_scope(entry["dn"], settings.group_base, settings.groups_scope):
                target = added if match.group("state") == "1" else removed
                target.setdefault(entry["dn"], set()).update(str(dn) for dn in values)
        if any(name not in _NOT_A_CHANGE and not _MEMBER_DELTA.match(name) for name in attributes):
            changed.add(key)
    users, groups, outside = _read_again(reader, changed)
    if reader.problems:
        return None
    user_records, group_records = reader.finish(users, groups)
    delta = Delta(
        users=user_records,
        groups=group_records,
        removed_user_keys=sorted(deleted | outside),
        removed_group_keys=sorted(deleted | outside),
    )
    _member_deltas(reader, delta, added, removed)
    following = {"cookie": cursors.pack(cookie), "since_census": 0}
    following["since_census"] = leavers.leaver_check(reader, delta, position, visibility)
    if reader.problems:
        return None
    log.info(
        "ldap dirsync read",
        extra={"objects": len(entries), "requests": requests, "changed": len(changed), "deleted": len(deleted)},
    )
    return delta, following


def _read_again(reader: DirectoryReader, keys: set[str]) -> tuple[list[PendingUser], list[PendingGroup], set[str]]:
    """The changed objects read whole, by objectGUID: users and groups in scope, and the keys of those outside."""
    settings = reader.settings
    context = leavers.naming_context(reader)
    users: list[PendingUser] = []
    groups: list[PendingGroup] = []
    found: set[str] = set()
    ordered = sorted(keys)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        either = "".join(f"(objectGUID={_guid_filter(key)})" for key in ordered[start : start + LOOKUP_CHUNK])
        for search_filter, active in reader.user_partitions(f"(|{either})"):
            for entry in reader.entries(
                "changed users", context, search_filter, "sub", reader.mapping.user_attributes, ()
            ):
                if not leavers.in_scope(entry["dn"], settings.users_base, settings.users_scope):
                    continue
                try:
                    pending = reader.mapping.user(entry, active)
                except Unmappable as error:
                    reader.problems.append(f"user skipped: {error}")
                    continue
                users.append(pending)
                found.add(pending.key)
        for entry in reader.entries(
            "changed groups", context, reader.group_filter(f"(|{either})"), "sub", reader.mapping.group_attributes, ()
        ):
            if not leavers.in_scope(entry["dn"], settings.group_base, settings.groups_scope):
                continue
            try:
                pending_group = reader.group(entry)
            except Unmappable as error:
                reader.problems.append(f"group skipped: {error}")
                continue
            groups.append(pending_group)
            found.add(pending_group.record.key)
    return users, groups, keys - found


def _member_deltas(
    reader: DirectoryReader, delta: Delta, added: dict[str, set[str]], removed: dict[str, set[str]]
) -> None:
    """Linked-value deltas (group DN → member DNs) as group key → member keys; groups read whole are skipped, their
    member list already replaces the stored one."""
    whole = {record.key for record in delta.groups}
    dns = set(added) | set(removed)
    for values in (*added.values(), *removed.values()):
        dns.update(values)
    keys = reader.resolve_dns(dns) if dns else {}
    for source, target in ((added, delta.members_added), (removed, delta.members_removed)):
        for group_dn, member_dns in source.items():
            group = keys.get(normal_dn(group_dn))
            if group is None or group in whole:
                continue
            members = {keys[normal_dn(dn)] for dn in member_dns if normal_dn(dn) in keys}
            if members:
                target.setdefault(group, set()).update(members)


def _guid_filter(key: str) -> str:
    return escape_bytes(uuid.UUID(key).bytes_le)
