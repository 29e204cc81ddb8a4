"""Incremental reads: the changes since a cursor as a :class:`Delta`, or ``None`` when only a full read is sound.

Five modes, chosen per flavour (``incremental = "auto"``) or by the ``incremental`` setting:

- ``syncrepl`` (OpenLDAP; RFC 4533 refreshOnly): one search per user partition and one for groups, each with its
  cookie. Changed entries come with their attributes; deletes come as a syncIdSet or delete states when the
  provider's session log covers the cookie (``refreshDeletes`` TRUE, §3.3.2). When the server falls back to the
  present phase (§3.3.1) or answers e-syncRefreshRequired (§3.3.3), deletions cannot be known without the full
  list of keys, so the caller reads a full snapshot instead.
- ``usn`` (Active Directory): users and groups anywhere in the domain with ``uSNChanged`` above the watermark (one
  now outside the scope has left it), tombstones via the Show Deleted control when the account can read them, else
  an objectGUID census (:mod:`connectors.ldap.leavers`); valid only on the same DC and invocationId (see
  :mod:`connectors.ldap.vendor.ad`).
- ``dirsync`` (Active Directory, :mod:`connectors.ldap.dirsync`): the DirSync control's cookie.
- ``changelog`` (389-DS): the retro changelog's entries after the last change number read; changed entries are
  read again from the directory by nsUniqueId, and deleted ones, or changed ones no longer in scope (moved out of
  the base, filtered out), are removed (see :mod:`connectors.ldap.vendor.ds389`).
- ``timestamp``: entries with ``modifyTimestamp`` at or after a watermark. It cannot see deletions, so its deltas
  remove nobody; the source's periodic full snapshot (``full_snapshot_every``) catches those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ldap3.utils.conv import escape_filter_chars

from connectors.interface import Delta
from connectors.ldap import cursor as cursors
from connectors.ldap import dirsync, leavers, syncrepl
from connectors.ldap.mapping import PendingGroup, PendingUser, Unmappable, normal_dn
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.vendor import ad, ds389

log = logging.getLogger(__name__)

SYNC_REFRESH_REQUIRED = 4096
NEVER_MATCHES = "(&(objectClass=*)(!(objectClass=*)))"
#: How far before the read's start a timestamp watermark is set, to absorb clock skew between syncd and the server.
TIMESTAMP_OVERLAP = timedelta(minutes=5)


def start_position(reader: DirectoryReader, mode: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The position to store with a full read, taken before the read so that changes made during it are read
    again next time (an upsert twice is harmless; a change never read is not)."""
    if mode == "syncrepl":
        cookie = _refresh_cookie(reader)
        if cookie is None:
            return None
        searches = _syncrepl_searches(reader)
        return {name: cursors.pack(cookie) for name in searches}
    if mode == "usn":
        return _usn_position(reader).as_dict()
    if mode == "dirsync":
        return dirsync.start_position(reader)
    if mode == "changelog":
        position = _changelog_position(reader)
        return position.as_dict() if position is not None else None
    if mode == "timestamp":
        moment = (now or datetime.now(UTC)) - TIMESTAMP_OVERLAP
        return {"since": moment.strftime("%Y%m%d%H%M%SZ")}
    return None


def read_changes(
    reader: DirectoryReader, mode: str, position: dict[str, Any], visibility: leavers.Visibility | None = None
) -> tuple[Delta, dict[str, Any]] | None:
    """``visibility`` (AD) says whether deletions can be read; without them leavers come from a census."""
    if mode == "syncrepl":
        return _syncrepl_changes(reader, position)
    if mode == "usn":
        return _usn_changes(reader, position, visibility)
    if mode == "dirsync":
        return dirsync.changes(reader, position, visibility)
    if mode == "changelog":
        return _changelog_changes(reader, position)
    if mode == "timestamp":
        return _timestamp_changes(reader, position)
    return None


# -- syncrepl (RFC 4533) ------------------------------------------------------------------------------------------


@dataclass
class Refresh:
    """What one refreshOnly search said."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    cookie: bytes | None = None
    deletes_known: bool = True


def _syncrepl_searches(reader: DirectoryReader) -> dict[str, tuple[str, str, str, list[str], bool | None]]:
    """name → (base, filter, scope, attributes, active) for each search; ``active`` is None for groups."""
    settings = reader.settings
    searches: dict[str, tuple[str, str, str, list[str], bool | None]] = {}
    for index, (search_filter, active) in enumerate(reader.user_partitions()):
        searches[f"users{index}"] = (
            settings.users_base,
            search_filter,
            settings.users_scope,
            reader.mapping.user_attributes,
            active,
        )
    searches["groups"] = (
        settings.group_base,
        reader.groups_filter,
        settings.groups_scope,
        reader.mapping.group_attributes,
        None,
    )
    return searches


def _refresh_cookie(reader: DirectoryReader) -> bytes | None:
    """A cookie for "now": a refreshOnly search matching nothing returns the provider's current state (§3.3.1)."""
    refresh = refresh_only(
        reader, "users (syncrepl cookie)", reader.settings.users_base, NEVER_MATCHES, "base", ["1.1"], None
    )
    return refresh.cookie


def refresh_only(
    reader: DirectoryReader,
    what: str,
    base: str,
    search_filter: str,
    scope: str,
    attributes: list[str],
    cookie: bytes | None,
) -> Refresh:
    """One refreshOnly search (RFC 4533 §3.3.1), decoded."""
    session = reader.session
    response = session.search(
        what,
        base,
        search_filter,
        scope,
        attributes,
        [syncrepl.request_control(cookie)],
        accept=(SYNC_REFRESH_REQUIRED,),
    )
    result = session.last_result()
    refresh = Refresh(cookie=cookie)
    if result.get("result") == SYNC_REFRESH_REQUIRED:
        refresh.deletes_known = False
        return refresh
    for item in response:
        if item["type"] == "intermediateResponse" and item.get("responseName") == syncrepl.SYNC_INFO_OID:
            info = syncrepl.decode_info(item["responseValue"])
            refresh.cookie = info.cookie or refresh.cookie
            refresh.deleted.extend(info.deleted_uuids)
            if info.present_phase:
                refresh.deletes_known = False
        elif item["type"] == "searchResEntry":
            control = (item.get("controls") or {}).get(syncrepl.SYNC_STATE_OID)
            if control is None:
                continue
            state = syncrepl.decode_state(control["value"])
            if state.state == syncrepl.STATE_DELETE:
                refresh.deleted.append(state.entry_uuid)
            elif state.state == syncrepl.STATE_PRESENT:
                refresh.deletes_known = False
            else:
                refresh.entries.append(item)
            refresh.cookie = state.cookie or refresh.cookie
        elif item["type"] == "searchResRef":
            reader.problems.append(f"{what}: part of the tree is on another server, not read")
    done = (result.get("controls") or {}).get(syncrepl.SYNC_DONE_OID)
    if done is None:
        refresh.deletes_known = False
        return refresh
    decoded = syncrepl.decode_done(done["value"])
    refresh.cookie = decoded.cookie or refresh.cookie
    if not decoded.refresh_deletes:
        refresh.deletes_known = False
    return refresh


def _syncrepl_changes(reader: DirectoryReader, position: dict[str, Any]) -> tuple[Delta, dict[str, Any]] | None:
    searches = _syncrepl_searches(reader)
    if set(position) != set(searches):
        return None
    users: list[PendingUser] = []
    groups: list[PendingGroup] = []
    removed_users: list[str] = []
    removed_groups: list[str] = []
    new_position: dict[str, Any] = {}
    for name, (base, search_filter, scope, attributes, active) in searches.items():
        refresh = refresh_only(
            reader,
            f"syncrepl refresh of {name.rstrip('0123456789')}",
            base,
            search_filter,
            scope,
            attributes,
            cursors.unpack(position[name]),
        )
        if not refresh.deletes_known:
            log.info("syncrepl cookie for %s no longer covered by the session log; reading fully", name)
            return None
        new_position[name] = cursors.pack(refresh.cookie) or position[name]
        for entry in refresh.entries:
            try:
                if active is None:
                    groups.append(reader.group(entry))
                else:
                    users.append(reader.mapping.user(entry, active))
            except Unmappable as error:
                reader.problems.append(f"entry skipped: {error}")
        (removed_groups if active is None else removed_users).extend(refresh.deleted)
    if reader.problems:
        return None
    user_records, group_records = reader.finish(users, groups)
    # slapd's session log is not scoped to the search base: every refresh names every deleted entryUUID, and a
    # deleted entry's class is gone with it. Each deleted key is therefore named as a removed user and a removed
    # group; the one that never existed is a no-op (keys are UUIDs, so they cannot collide).
    changed = {record.key for record in user_records} | {record.key for record in group_records}
    removed = sorted((set(removed_users) | set(removed_groups)) - changed)
    delta = Delta(users=user_records, groups=group_records, removed_user_keys=removed, removed_group_keys=removed)
    return delta, new_position


# -- Active Directory USN -----------------------------------------------------------------------------------------


def _usn_position(reader: DirectoryReader) -> ad.UsnPosition:
    root = reader.session.root_dse
    service = str((root.get("dsServiceName") or [""])[0])
    invocation: list[bytes] = []
    if service:
        found = reader.session.search("the DC's invocationId", service, "(objectClass=*)", "base", ["invocationId"])
        entries = [item for item in found if item["type"] == "searchResEntry"]
        invocation = list(entries[0]["raw_attributes"].get("invocationId") or []) if entries else []
    return ad.position(root, invocation)


def _usn_changes(
    reader: DirectoryReader, position: dict[str, Any], visibility: leavers.Visibility | None
) -> tuple[Delta, dict[str, Any]] | None:
    previous = ad.UsnPosition.from_dict(position)
    current = _usn_position(reader)
    reason = ad.full_read_reason(previous, current)
    if reason:
        log.info("USN watermark unusable (%s); reading fully", reason)
        return None
    usn_filter = f"(uSNChanged>={previous.usn + 1})"
    context = leavers.naming_context(reader)
    # Changed users and groups anywhere in the domain: one now outside the scope has left it.
    users, removed_users = _changed_users(reader, context, usn_filter)
    groups, removed_groups = _changed_groups(reader, context, usn_filter)
    if visibility is None or visibility.deletions:
        for entry in reader.session.paged(
            "deleted objects",
            context,
            ad.deleted_filter(previous),
            "sub",
            ["objectGUID", "objectClass"],
            [(ad.SHOW_DELETED_OID, True, None)],
        ):
            if entry["type"] != "searchResEntry":
                continue
            classes = {str(c).lower() for c in entry["attributes"].get("objectClass") or []}
            key = ad.guid_text(list(entry["raw_attributes"].get("objectGUID") or []))
            if key and "group" in classes:
                removed_groups.append(key)
            elif key and "user" in classes:
                removed_users.append(key)
    if reader.problems:
        return None
    user_records, group_records = reader.finish(users, groups)
    delta = Delta(
        users=user_records, groups=group_records, removed_user_keys=removed_users, removed_group_keys=removed_groups
    )
    following = current.as_dict()
    following["since_census"] = leavers.leaver_check(reader, delta, position, visibility)
    if reader.problems:
        return None
    return delta, following


def _changed_users(reader: DirectoryReader, context: str, extra: str) -> tuple[list[PendingUser], list[str]]:
    """Changed users in scope (mapped), and the keys of changed users outside it."""
    settings = reader.settings
    inside: list[PendingUser] = []
    outside: list[str] = []
    for search_filter, active in reader.user_partitions(extra):
        for entry in reader.entries("changed users", context, search_filter, "sub", reader.mapping.user_attributes, ()):
            if not leavers.in_scope(entry["dn"], settings.users_base, settings.users_scope):
                outside.append(ad.guid_text(list(entry["raw_attributes"].get("objectGUID") or [])))
                continue
            try:
                inside.append(reader.mapping.user(entry, active))
            except Unmappable as error:
                reader.problems.append(f"user skipped: {error}")
    return inside, [key for key in outside if key]


def _changed_groups(reader: DirectoryReader, context: str, extra: str) -> tuple[list[PendingGroup], list[str]]:
    settings = reader.settings
    inside: list[PendingGroup] = []
    outside: list[str] = []
    search_filter = reader.group_filter(extra)
    for entry in reader.entries("changed groups", context, search_filter, "sub", reader.mapping.group_attributes, ()):
        if not leavers.in_scope(entry["dn"], settings.group_base, settings.groups_scope):
            outside.append(ad.guid_text(list(entry["raw_attributes"].get("objectGUID") or [])))
            continue
        try:
            inside.append(reader.group(entry))
        except Unmappable as error:
            reader.problems.append(f"group skipped: {error}")
    return inside, [key for key in outside if key]


# -- modifyTimestamp watermark ------------------------------------------------------------------------------------


def _timestamp_changes(reader: DirectoryReader, position: dict[str, Any]) -> tuple[Delta, dict[str, Any]] | None:
    since = str(position.get("since") or "")
    if not since:
        return None
    following = start_position(reader, "timestamp")
    assert following is not None
    changed = f"(modifyTimestamp>={since})"
    users = list(reader.users(changed))
    groups = list(reader.groups(changed))
    if reader.problems:
        return None
    user_records, group_records = reader.finish(users, groups)
    return Delta(users=user_records, groups=group_records), following


# -- 389-DS retro changelog ---------------------------------------------------------------------------------------


def _changelog_position(reader: DirectoryReader) -> ds389.ChangelogPosition | None:
    """The server's last change number, from the rootDSE read when the session opened (before any search)."""
    if ds389.changelog_base(reader.session.root_dse) is None:
        return None
    _, last = ds389.changelog_span(reader.session.root_dse)
    return ds389.ChangelogPosition(reader.session.url, last)


def _changelog_changes(reader: DirectoryReader, position: dict[str, Any]) -> tuple[Delta, dict[str, Any]] | None:
    root = reader.session.root_dse
    base = ds389.changelog_base(root)
    current = _changelog_position(reader)
    if base is None or current is None:
        log.info("the server keeps no retro changelog now; reading fully")
        return None
    previous = ds389.ChangelogPosition.from_dict(position)
    first, _ = ds389.changelog_span(root)
    reason = ds389.changelog_full_read_reason(previous, current, first)
    if reason:
        log.info("changelog position unusable (%s); reading fully", reason)
        return None
    if current.change == previous.change:
        return Delta(), current.as_dict()
    changes = _changelog_entries(reader, base, previous, current)
    if changes is None:
        return None
    changed, deleted = changes
    users: list[PendingUser] = []
    groups: list[PendingGroup] = []
    found: set[str] = set()
    for chunk in _id_chunks(sorted(changed)):
        either = "(|" + "".join(f"(nsUniqueId={escape_filter_chars(key)})" for key in chunk) + ")"
        users.extend(reader.users(either))
        groups.extend(reader.groups(either))
        found |= _in_scope(reader, either)
    if reader.problems:
        return None
    user_records, group_records = reader.finish(users, groups)
    # A target deleted, or changed and found outside the scope now (moved out of the base, filtered out), has left
    # the source if it was under a base before the change. Removal needs that evidence: a changed target found
    # nowhere (nsUniqueId not searchable for bind_dn, an ACI) makes the read a full one. A target's key is its
    # nsUniqueId; a flavour keying by another attribute (FreeIPA's ipaUniqueID) cannot name it once it has left,
    # so that read is a full one too.
    bases = (reader.settings.users_base, reader.settings.group_base)
    ours = {key: dn for key, dn in changed.items() if key.lower() not in found and any(_under(dn, b) for b in bases)}
    elsewhere = _found_anywhere(reader, sorted(ours))
    if set(ours) - elsewhere:
        log.info("%d changed entries are neither in scope nor elsewhere for bind_dn; reading fully", len(ours))
        return None
    vanished = {key for key, dn in deleted.items() if any(_under(dn, b) for b in bases)} | set(ours)
    present = {record.key for record in user_records} | {record.key for record in group_records}
    removed = sorted(vanished - present)
    if removed and reader.flavor.key_attribute.lower() != "nsuniqueid":
        log.info(
            "%d entries left the scope, and %s is not in the changelog; reading fully",
            len(removed),
            reader.flavor.key_attribute,
        )
        return None
    delta = Delta(users=user_records, groups=group_records, removed_user_keys=removed, removed_group_keys=removed)
    return delta, current.as_dict()


def _changelog_entries(
    reader: DirectoryReader, base: str, previous: ds389.ChangelogPosition, current: ds389.ChangelogPosition
) -> tuple[dict[str, str], dict[str, str]] | None:
    """(changed, deleted): nsUniqueId → the DN it had before the change, or ``None`` when the changelog cannot be
    trusted for this span (an entry without targetUniqueId; a role lock changed; fewer entries than numbers)."""
    deleted: dict[str, str] = {}
    changed: dict[str, str] = {}
    seen = 0
    for entry in reader.session.paged(
        "retro changelog",
        base,
        ds389.changes_filter(previous, current),
        "one",
        ["changeNumber", "changeType", "targetDn", ds389.TARGET_UNIQUE_ID],
    ):
        if entry["type"] != "searchResEntry":
            continue
        seen += 1
        attributes = {name.lower(): values for name, values in entry["attributes"].items()}
        target = str((attributes.get(ds389.TARGET_UNIQUE_ID.lower()) or [""])[0])
        if not target:
            log.info("changelog entry %s has no %s; reading fully", entry["dn"], ds389.TARGET_UNIQUE_ID)
            return None
        dn = str((attributes.get("targetdn") or [""])[0])
        if ds389.is_role_lock_entry(dn):
            log.info("%s changed: role locks may have changed without a change to people; reading fully", dn)
            return None
        if str((attributes.get("changetype") or [""])[0]).lower() == "delete":
            deleted[target] = dn
            changed.pop(target, None)
        else:
            changed.setdefault(target, dn)
    if seen < current.change - previous.change:
        # Numbers are contiguous: fewer entries than numbers means ACIs hid some, and a hidden delete would be missed.
        log.info(
            "bind_dn saw %d of changes %d to %d in %s; reading fully", seen, previous.change + 1, current.change, base
        )
        return None
    return changed, deleted


def _in_scope(reader: DirectoryReader, either: str) -> set[str]:
    """The nsUniqueIds matching ``either`` among the users and groups in scope."""
    settings = reader.settings
    found: set[str] = set()
    for base, search_filter, scope in (
        (settings.users_base, reader.users_filter, settings.users_scope),
        (settings.group_base, reader.groups_filter, settings.groups_scope),
    ):
        for entry in reader.session.paged(
            "changed entries", base, f"(&{search_filter}{either})", scope, ["nsUniqueId"]
        ):
            if entry["type"] == "searchResEntry":
                found.update(str(value).lower() for value in entry["attributes"].get("nsUniqueId") or [])
    return found


def _found_anywhere(reader: DirectoryReader, keys: list[str]) -> set[str]:
    """Which of these nsUniqueIds name an entry anywhere in the naming context of ``users_base``."""
    contexts = [str(c) for c in reader.session.root_dse.get("namingContexts") or []]
    under = [c for c in contexts if _under(reader.settings.users_base, c)]
    base = max(under, key=len) if under else reader.settings.users_base
    found: set[str] = set()
    for chunk in _id_chunks(keys):
        either = "(|" + "".join(f"(nsUniqueId={escape_filter_chars(key)})" for key in chunk) + ")"
        for entry in reader.session.paged("moved entries", base, either, "sub", ["nsUniqueId"]):
            if entry["type"] == "searchResEntry":
                found.update(str(value) for value in entry["attributes"].get("nsUniqueId") or [])
    return {key for key in keys if key.lower() in {value.lower() for value in found}}


def _under(dn: str, base: str) -> bool:
    entry, parent = normal_dn(dn), normal_dn(base)
    return entry == parent or entry.endswith("," + parent)


def _id_chunks(keys: list[str], size: int = 200) -> list[list[str]]:
    return [keys[start : start + size] for start in range(0, len(keys), size)]
