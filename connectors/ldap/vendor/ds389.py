"""389 Directory Server: ``nsUniqueId`` keys and ``nsAccountLock`` (an operational attribute set by dsidm lock)."""

from __future__ import annotations

from connectors.ldap.vendor import Attributes, Flavor, first_text
from connectors.ldap.vendor.openldap import USER_ATTRIBUTES


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
    incremental="timestamp",
)
