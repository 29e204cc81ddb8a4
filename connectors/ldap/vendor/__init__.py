"""Directory flavours: what differs between OpenLDAP, Active Directory, FreeIPA and 389-DS, one module each.

The common path (paging, mapping, member resolution) asks a :class:`Flavor` for the stable key, the default
filters and attribute names, how a disabled account shows, and which incremental mode the server supports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Attributes = Mapping[str, Any]


@dataclass(frozen=True)
class Flavor:
    """One directory product's conventions.

    ``key`` turns an entry's raw attribute values (bytes) into the stable key string; ``is_disabled`` reads the
    account state from the entry's attributes, given as a dict with lower-case names; ``dn_attribute`` is the attribute a filter can match a DN with
    (OpenLDAP's ``entryDN``, AD's ``distinguishedName``), used to resolve member DNs without reading every entry.
    """

    name: str
    key_attribute: str
    key: Callable[[list[bytes]], str]
    users_filter: str
    groups_filter: str
    user_attributes: Mapping[str, str]
    group_member_attributes: tuple[str, ...]
    state_attributes: tuple[str, ...]
    is_disabled: Callable[[Attributes], bool]
    dn_attribute: str
    incremental: str
    #: field → attributes read when the field's own attribute is empty (AD: employeeID, then employeeNumber).
    fallback_attributes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def first_text(values: list[bytes]) -> str:
    return values[0].decode("utf-8") if values else ""


def detect(root_dse: Attributes, users_base: str) -> str:
    """Name the flavour from the rootDSE (RFC 4512 §5.1): AD announces its LDAP capability OIDs, OpenLDAP its
    ``OpenLDAProotDSE`` class, 389-DS its vendorName; FreeIPA is 389-DS with its accounts tree."""
    capabilities = {str(value) for value in root_dse.get("supportedCapabilities", [])}
    if "1.2.840.113556.1.4.800" in capabilities:  # LDAP_CAP_ACTIVE_DIRECTORY_OID
        return "ad"
    classes = {str(value).lower() for value in root_dse.get("objectClass", [])}
    if "openldaprootdse" in classes:
        return "openldap"
    vendor = " ".join(str(value) for value in root_dse.get("vendorName", [])).lower()
    if "389" in vendor or "fedora" in vendor or "red hat" in vendor:
        return "freeipa" if "cn=accounts," in users_base.lower() else "389ds"
    return "openldap"


def flavor_named(name: str) -> Flavor:
    from connectors.ldap.vendor import ad, ds389, freeipa, openldap

    return {"openldap": openldap.FLAVOR, "ad": ad.FLAVOR, "freeipa": freeipa.FLAVOR, "389ds": ds389.FLAVOR}[name]
