"""FreeIPA (389-DS underneath): ``ipaUniqueID`` keys, users under cn=users,cn=accounts, ``nsAccountLock``, and
increments from the retro changelog FreeIPA keeps (a change that takes an entry out of scope reads fully, since the
changelog names it by nsUniqueId only; see :mod:`connectors.ldap.vendor.ds389`)."""

from __future__ import annotations

from connectors.ldap.vendor import Flavor, first_text
from connectors.ldap.vendor.ds389 import is_account_locked
from connectors.ldap.vendor.openldap import USER_ATTRIBUTES

FLAVOR = Flavor(
    name="freeipa",
    key_attribute="ipaUniqueID",
    key=first_text,
    users_filter="(objectClass=posixAccount)",
    groups_filter="(objectClass=groupOfNames)",
    user_attributes={**USER_ATTRIBUTES, "department": "ou"},
    group_member_attributes=("member",),
    state_attributes=("nsAccountLock",),
    is_disabled=is_account_locked,
    dn_attribute="entrydn",
    incremental="changelog",
)
