"""OpenLDAP: ``entryUUID`` keys (RFC 4530), inetOrgPerson users, ppolicy lockout, syncrepl increments (RFC 4533)."""

from __future__ import annotations

from connectors.ldap.vendor import Attributes, Flavor, first_text

USER_ATTRIBUTES = {
    "user_name": "uid",
    "email": "mail",
    "display_name": "displayName",
    "given_name": "givenName",
    "family_name": "sn",
    "department": "departmentNumber",
    "title": "title",
    "employee_number": "employeeNumber",
    "manager": "manager",
    "group_name": "cn",
}


def is_locked(attributes: Attributes) -> bool:
    """An account with ``pwdAccountLockedTime`` is locked by the password policy overlay
    (draft-behera-ldap-password-policy §5.3.3; ``000001010000Z`` locks it until an administrator unlocks it)."""
    return bool(attributes.get("pwdaccountlockedtime"))


FLAVOR = Flavor(
    name="openldap",
    key_attribute="entryUUID",
    key=first_text,
    users_filter="(objectClass=inetOrgPerson)",
    groups_filter="(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
    user_attributes=USER_ATTRIBUTES,
    group_member_attributes=("member", "uniqueMember", "memberUid"),
    state_attributes=("pwdAccountLockedTime",),
    is_disabled=is_locked,
    dn_attribute="entryDN",
    incremental="syncrepl",
)
