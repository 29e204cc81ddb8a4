"""Active Directory leavers: what the bind account can see of deletions, and the census that finds leavers anyway.

A sync tool is usually given a plain domain account. Such an account cannot read tombstones: AD (and Samba) answer
its Show Deleted search ([MS-ADTS] §3.1.1.3.4.1.14) with success and no entries, and Samba's DirSync does not
return deleted objects to it even with "Replicating Directory Changes". A user moved out of ``users_base`` (to an
``OU=Leavers``) is not deleted at all. So, per read, :func:`probe` finds out whether the account sees tombstones
and holds the DirSync right, and when it cannot see deletions, :func:`census` reads every objectGUID in scope (one
attribute, paged) so that a key no longer listed is a leaver (see docs/architecture.md, "Active Directory").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ldap3.protocol.microsoft import dir_sync_control

from connectors.interface import Delta
from connectors.ldap.mapping import normal_dn
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.vendor import ad

log = logging.getLogger(__name__)

NEVER_MATCHES = "(&(objectClass=*)(!(objectClass=*)))"
_REFUSED = (1, 2, 8, 12, 50, 53)


@dataclass(frozen=True)
class Visibility:
    """What the bind account may see: tombstones (``deletions``) and DirSync ("Replicating Directory Changes")."""

    deletions: bool
    dirsync: bool

    def notes(self, mode: str, census_every: int) -> list[str]:
        seen = "yes" if self.deletions else "no (no tombstone under CN=Deleted Objects is readable by bind_dn)"
        right = "yes" if self.dirsync else "no"
        lines = [f"deletions visible: {seen}", f"DirSync right (Replicating Directory Changes): {right}"]
        if mode in ("usn", "dirsync"):
            if self.deletions:
                lines.append(f"incremental {mode}: deletions read from tombstones, moves out of scope by DN")
            else:
                every = "every increment" if census_every == 1 else f"every {census_every} increments"
                lines.append(f"incremental {mode}: leavers found by an objectGUID census of the scope {every}")
        return lines


def naming_context(reader: DirectoryReader) -> str:
    root = reader.session.root_dse
    return str((root.get("defaultNamingContext") or [reader.settings.users_base])[0])


def probe(reader: DirectoryReader) -> Visibility:
    """Two cheap searches: one tombstone under the Deleted Objects container, and an empty DirSync request.

    A domain with no tombstone at all reads as "deletions not visible": syncd then cannot tell, so it checks by
    census, which is always right, only slower.
    """
    session = reader.session
    context = naming_context(reader)
    found = session.search(
        "deleted objects (visibility)",
        f"CN=Deleted Objects,{context}",
        "(isDeleted=TRUE)",
        "one",
        ["1.1"],
        [(ad.SHOW_DELETED_OID, True, None)],
        accept=(4, 32, *_REFUSED),
        size_limit=1,
    )
    deletions = any(item["type"] == "searchResEntry" for item in found)
    session.search(
        "DirSync (right)",
        context,
        NEVER_MATCHES,
        "base",
        ["objectGUID"],
        [dir_sync_control(True, False, False, False, True, 0, None)],
        accept=_REFUSED,
    )
    dirsync = session.last_result().get("result") == 0
    return Visibility(deletions=deletions, dirsync=dirsync)


def census(reader: DirectoryReader) -> tuple[frozenset[str], frozenset[str]]:
    """Every user key and group key in scope, reading only the key attribute (paged like a full read)."""
    settings = reader.settings
    key = [reader.flavor.key_attribute]
    users = frozenset(
        reader.mapping.entry_key(entry)
        for entry in reader.entries(
            "leaver check (users)", settings.users_base, reader.users_filter, settings.users_scope, key, ()
        )
    )
    groups = frozenset(
        reader.mapping.entry_key(entry)
        for entry in reader.entries(
            "leaver check (groups)", settings.group_base, reader.groups_filter, settings.groups_scope, key, ()
        )
    )
    return users, groups


def census_due(position: dict[str, object], every: int) -> tuple[bool, int]:
    """Whether this increment runs the census, and the count of increments since one to store with the cursor."""
    since = int(str(position.get("since_census") or 0)) + 1
    return (True, 0) if since >= every else (False, since)


def in_scope(dn: str, base: str, scope: str) -> bool:
    """Whether ``dn`` lies in the search scope (RFC 4511 §4.5.1.2) of ``base``; DNs compared in normal form."""
    entry, root = normal_dn(dn), normal_dn(base)
    if scope == "base":
        return entry == root
    if not entry.endswith("," + root):
        return scope == "sub" and entry == root
    return scope == "sub" or "," not in entry[: -len(root) - 1].replace("\\,", "")


def leaver_check(reader: DirectoryReader, delta: Delta, position: dict[str, Any], visibility: Visibility | None) -> int:
    """When the account cannot see deletions, run the census when due (filling the delta's present keys) or mark
    the delta blind to deletions; returns the count of increments since the last census, for the cursor."""
    if visibility is None or visibility.deletions:
        return 0
    every = reader.settings.leaver_check_every
    due, since = census_due(position, every)
    if due:
        delta.present_user_keys, delta.present_group_keys = census(reader)
    else:
        delta.blind_to_deletions = (
            f"bind_dn cannot see deletions and the leaver check runs every {every} increments "
            f"(next in {every - since}); leavers since the last check are not known yet"
        )
    return since
