"""Reading a directory into records: the full snapshot, and the lookups a delta needs to resolve DNs to keys.

A full read pages through users, then groups (RFC 2696), mapping each entry as it arrives so only one page of
protocol data is held at a time. Group members and managers are DNs (``memberUid`` holds uids, RFC 2307); they
become keys once every user and group has been seen. A DN naming an entry outside the read (another base, or
excluded by the filters) is dropped from the member list and counted in the group's ``unresolved_members``
attribute: it names nobody this source asserts, and its absence is not a problem of the read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from connectors.interface import GroupRecord, Snapshot, UserRecord
from connectors.ldap.mapping import EntryMapping, PendingGroup, PendingUser, Unmappable, normal_dn
from connectors.ldap.session import Control, Session
from connectors.ldap.settings import Settings
from connectors.ldap.vendor import Flavor, ad

log = logging.getLogger(__name__)
LOOKUP_CHUNK = 200

# Continuation references AD returns from a domain root search: other naming contexts, never users or groups.
_AD_PARTITIONS = ("dc=domaindnszones,", "dc=forestdnszones,", "cn=configuration,")


class DirectoryReader:
    """Reads users and groups of one source through an open :class:`Session`."""

    def __init__(self, session: Session, flavor: Flavor, settings: Settings) -> None:
        self.session = session
        self.flavor = flavor
        self.settings = settings
        self.mapping = EntryMapping(flavor, settings)
        self.users_filter = settings.users_filter or flavor.users_filter
        self.groups_filter = settings.groups_filter or flavor.groups_filter
        self.problems: list[str] = []

    # -- filters ------------------------------------------------------------------------------------------------

    def user_partitions(self, extra: str | None = None) -> list[tuple[str, bool]]:
        """The user searches and whether their entries are active: with ``disabled_filter``, the server splits
        users into (filter AND NOT disabled) and (filter AND disabled), so the rule is the server's own matching."""
        base = self.users_filter if extra is None else f"(&{self.users_filter}{extra})"
        disabled = self.settings.disabled_filter
        if not disabled:
            return [(base, True)]
        return [(f"(&{base}(!{disabled}))", True), (f"(&{base}{disabled})", False)]

    def group_filter(self, extra: str | None = None) -> str:
        return self.groups_filter if extra is None else f"(&{self.groups_filter}{extra})"

    # -- entries ------------------------------------------------------------------------------------------------

    def users(self, extra: str | None = None, controls: tuple[Control, ...] = ()) -> Iterator[PendingUser]:
        for search_filter, active in self.user_partitions(extra):
            for entry in self.entries(
                "users",
                self.settings.users_base,
                search_filter,
                self.settings.users_scope,
                self.mapping.user_attributes,
                controls,
            ):
                try:
                    yield self.mapping.user(entry, active)
                except Unmappable as error:
                    self.problems.append(f"user skipped: {error}")

    def groups(self, extra: str | None = None, controls: tuple[Control, ...] = ()) -> Iterator[PendingGroup]:
        for entry in self.entries(
            "groups",
            self.settings.group_base,
            self.group_filter(extra),
            self.settings.groups_scope,
            self.mapping.group_attributes,
            controls,
        ):
            try:
                yield self.group(entry)
            except Unmappable as error:
                self.problems.append(f"group skipped: {error}")

    def group(self, entry: dict[str, Any]) -> PendingGroup:
        pending = self.mapping.group(entry)
        if self.flavor.name == "ad" and ad.ranged_slice(entry["attributes"], "member") is not None:
            members = ad.collect_ranged(entry["attributes"], "member", lambda attr: self._fetch(entry["dn"], attr))
            pending = dataclasses.replace(pending, member_dns=tuple(str(dn) for dn in members))
        return pending

    def _fetch(self, dn: str, attribute: str) -> dict[str, Any]:
        found = self.session.search("ranged members", dn, "(objectClass=*)", "base", [attribute])
        entries = [item for item in found if item["type"] == "searchResEntry"]
        return dict(entries[0]["attributes"]) if entries else {}

    def entries(
        self, what: str, base: str, search_filter: str, scope: str, attributes: list[str], controls: tuple[Control, ...]
    ) -> Iterator[dict[str, Any]]:
        for item in self.session.paged(what, base, search_filter, scope, attributes, controls):
            if item["type"] == "searchResEntry":
                yield item
            elif not self._harmless_reference(item):
                uris = ", ".join(item.get("uri") or [])
                self.problems.append(f"{what} under {base}: part of the tree is on another server ({uris}), not read")

    def _harmless_reference(self, item: dict[str, Any]) -> bool:
        uris = [uri.lower() for uri in item.get("uri") or []]
        return self.flavor.name == "ad" and bool(uris) and all(any(p in u for p in _AD_PARTITIONS) for u in uris)

    # -- the full snapshot --------------------------------------------------------------------------------------

    def snapshot(self, cursor: str | None) -> Snapshot:
        """Every user and group in scope. Complete unless an entry could not be mapped or a referral hid a subtree;
        any failed page raises instead (see :meth:`Session.paged`)."""
        keys: dict[str, str] = {}
        uids: dict[str, str] = {}
        pending_users: list[PendingUser] = []
        for pending in self.users():
            key = pending.key
            keys[normal_dn(pending.dn)] = key
            uids[pending.values["user_name"].lower()] = key
            pending_users.append(pending)
        groups: list[PendingGroup] = []
        for pending_group in self.groups():
            keys[normal_dn(pending_group.dn)] = pending_group.record.key
            groups.append(pending_group)
        users: list[Any] = pending_users  # built in place: each pending user is freed as its record replaces it
        for index, pending in enumerate(pending_users):
            users[index] = _built(pending, keys)
        records = [_with_members(group, keys, uids) for group in groups]
        return Snapshot(
            users=users, groups=records, cursor=cursor, complete=not self.problems, problems=list(self.problems)
        )

    # -- lookups for deltas -------------------------------------------------------------------------------------

    def resolve_dns(self, dns: Iterable[str]) -> dict[str, str]:
        """Keys of the users and groups in scope named by these DNs (normal form → key), in batched searches.

        Each DN is looked up by its RDN (``(|(uid=a)(cn=b)...)``): RDN attributes are indexed in practice, so the
        server does not scan the base once per batch. Only entries whose DN is one of those asked for count. A DN
        whose RDN is multi-valued or escaped is matched by the flavour's DN attribute (``entryDN``,
        ``distinguishedName``) instead.
        """
        wanted = {normal_dn(dn): dn for dn in dns}
        found: dict[str, str] = {}
        searches = [
            (self.settings.users_base, self.users_filter, self.settings.users_scope),
            (self.settings.group_base, self.groups_filter, self.settings.groups_scope),
        ]
        for base, search_filter, scope in searches:
            missing = [dn for norm, dn in wanted.items() if norm not in found]
            terms = sorted({self._lookup_term(dn) for dn in missing})
            for chunk in _chunks(terms, LOOKUP_CHUNK):
                either = "".join(chunk)
                for entry in self.session.paged(
                    "member lookup", base, f"(&{search_filter}(|{either}))", scope, [self.flavor.key_attribute]
                ):
                    norm = normal_dn(entry["dn"]) if entry["type"] == "searchResEntry" else None
                    if norm in wanted:
                        found[norm] = self.mapping.entry_key(entry)
        return found

    def _lookup_term(self, dn: str) -> str:
        try:
            parts = parse_dn(dn)
        except LDAPInvalidDnError:
            parts = []
        if parts and parts[0][2] != "+" and "\\" not in parts[0][1]:
            return f"({parts[0][0]}={escape_filter_chars(parts[0][1])})"
        return f"({self.flavor.dn_attribute}={escape_filter_chars(dn)})"

    def resolve_uids(self, names: Iterable[str]) -> dict[str, str]:
        """Keys of the users in scope with these user names (``memberUid`` values, RFC 2307), batched."""
        found: dict[str, str] = {}
        attribute = self.mapping.user_name
        for chunk in _chunks(sorted({n.lower() for n in names}), LOOKUP_CHUNK):
            either = "".join(f"({attribute}={escape_filter_chars(name)})" for name in chunk)
            for entry in self.session.paged(
                "memberUid lookup",
                self.settings.users_base,
                f"(&{self.users_filter}(|{either}))",
                self.settings.users_scope,
                [self.flavor.key_attribute, attribute],
            ):
                if entry["type"] == "searchResEntry":
                    uid = entry["attributes"].get(attribute)
                    if uid:
                        found[str(uid[0]).lower()] = self.mapping.entry_key(entry)
        return found

    def finish(
        self, users: list[PendingUser], groups: list[PendingGroup]
    ) -> tuple[list[UserRecord], list[GroupRecord]]:
        """Resolve the DNs and uids of changed entries (a delta) with lookups, since the rest was not read."""
        dns: set[str] = set()
        names: set[str] = set()
        for user in users:
            dns.update(dn for dn in (user.manager_dn, *user.member_of) if dn)
        for group in groups:
            dns.update(group.member_dns)
            names.update(group.member_uids)
        keys = self.resolve_dns(dns) if dns else {}
        uids = self.resolve_uids(names) if names else {}
        for pending_user in users:
            keys.setdefault(normal_dn(pending_user.dn), pending_user.key)
        for pending_group in groups:
            keys.setdefault(normal_dn(pending_group.dn), pending_group.record.key)
        return [_built(user, keys) for user in users], [_with_members(group, keys, uids) for group in groups]


def _built(pending: PendingUser, keys: dict[str, str]) -> UserRecord:
    """The user's record, with its manager's DN and memberOf DNs turned into keys (unknown ones dropped)."""
    manager_key = keys.get(normal_dn(pending.manager_dn)) if pending.manager_dn else None
    if not pending.member_of:
        return pending.build(manager_key)
    groups = tuple(sorted({keys[n] for n in map(normal_dn, pending.member_of) if n in keys}))
    return pending.build(manager_key, groups)


def _with_members(pending: PendingGroup, keys: dict[str, str], uids: dict[str, str]) -> GroupRecord:
    members: set[str] = set()
    unresolved = 0
    for dn in pending.member_dns:
        key = keys.get(normal_dn(dn))
        if key is None:
            unresolved += 1
        elif key != pending.record.key:
            members.add(key)
    for uid in pending.member_uids:
        key = uids.get(uid.lower())
        if key is None:
            unresolved += 1
        else:
            members.add(key)
    attributes = dict(pending.record.attributes)
    if unresolved:
        attributes["unresolved_members"] = unresolved
    return dataclasses.replace(pending.record, member_keys=frozenset(members), attributes=attributes)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
