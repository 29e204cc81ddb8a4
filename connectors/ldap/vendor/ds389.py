"""389 Directory Server: ``nsUniqueId`` keys, ``nsAccountLock`` (an operational attribute set by dsidm lock) and
increments from the retro changelog.

The retro changelog (draft-good-ldap-changelog-04; 389-DS's Retro Changelog Plugin) numbers every change on one
server: the rootDSE names the container (``changelog``) and the ``firstchangenumber`` / ``lastchangenumber`` it
holds, and each entry carries ``changeNumber``, ``changeType``, ``targetDn`` and — with the plugin's
``nsslapd-attribute: nsuniqueid:targetUniqueId``, as FreeIPA configures it — the target's ``nsUniqueId``, also for
deletes. Numbers are per server and contiguous, so a position is valid only on the server that gave it, while
every number after it is still held, and a read that sees fewer entries than the numbers span was hidden from by
ACIs: each of those cases forces a full read (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.ldap.vendor import Attributes, Flavor, first_text
from connectors.ldap.vendor.openldap import USER_ATTRIBUTES

#: The changelog entry attribute holding the target's nsUniqueId (the plugin's ``nsslapd-attribute`` alias).
TARGET_UNIQUE_ID = "targetUniqueId"
#: The entries behind a role lock (``dsidm role lock``): the nested role nsDisabledRole, the managed role
#: nsManagedDisabledRole and the class of service computing ``nsAccountLock: true`` for their members. A change to
#: them locks or unlocks people without changing their entries, so the changelog alone cannot say who.
_ROLE_LOCK_RDNS = frozenset(
    {"nsdisabledrole", "nsmanageddisabledrole", "nsaccountinactivation_cos", "nsaccountinactivationtmp"}
)


def is_account_locked(attributes: Attributes) -> bool:
    """``nsAccountLock: TRUE`` (any case) disables the account on 389-DS and FreeIPA."""
    return any(str(value).strip().lower() == "true" for value in attributes.get("nsaccountlock") or [])


FLAVOR = Flavor(
    name="389ds",
    key_attribute="nsUniqueId",
    key=first_text,
    users_filter="(objectClass=inetOrgPerson)",
    groups_filter="(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
    user_attributes=USER_ATTRIBUTES,
    group_member_attributes=("member", "uniqueMember", "memberUid"),
    state_attributes=("nsAccountLock",),
    is_disabled=is_account_locked,
    dn_attribute="entrydn",
    incremental="changelog",
)


def _root_value(root_dse: Mapping[str, Any], name: str) -> str | None:
    for key, values in root_dse.items():
        if key.lower() == name.lower():
            return str(values[0]) if values else None
    return None


def changelog_base(root_dse: Mapping[str, Any]) -> str | None:
    """The retro changelog's container, or ``None`` when the server keeps none (the plugin is off)."""
    return _root_value(root_dse, "changelog")


@dataclass(frozen=True)
class ChangelogPosition:
    """The last change number read, and the server that numbered it."""

    server: str
    change: int

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "change": self.change}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ChangelogPosition:
        return cls(str(value["server"]), int(value["change"]))


def changelog_span(root_dse: Mapping[str, Any]) -> tuple[int, int]:
    """(first, last) change numbers the server holds; (0, 0) for an empty changelog."""
    first = _root_value(root_dse, "firstchangenumber")
    last = _root_value(root_dse, "lastchangenumber")
    return int(first or 0), int(last or 0)


def changelog_full_read_reason(previous: ChangelogPosition, current: ChangelogPosition, first: int) -> str | None:
    """Why ``previous`` cannot be continued from on the server now at ``current``, or ``None`` when it can."""
    if previous.server != current.server:
        return f"the position is from {previous.server}, this read reached {current.server}"
    if current.change < previous.change:
        return f"the changelog went backwards ({previous.change} → {current.change}; reset or restored)"
    if current.change > previous.change and first > previous.change + 1:
        return f"changes {previous.change + 1} to {first - 1} were trimmed from the changelog"
    return None


def is_role_lock_entry(dn: str) -> bool:
    """Whether ``dn`` is (or is under) one of the entries that lock accounts through roles."""
    for part in dn.split(","):
        _, _, value = part.partition("=")
        if value.strip().lower() in _ROLE_LOCK_RDNS:
            return True
    return False


def changes_filter(previous: ChangelogPosition, current: ChangelogPosition) -> str:
    return f"(&(changeNumber>={previous.change + 1})(changeNumber<={current.change}))"
