"""Active Directory: ``objectGUID`` keys, ``userAccountControl``, ranged ``member`` values and USN increments.

References: objectGUID is a GUID in Microsoft's mixed-endian byte order ([MS-DTYP] §2.3.4.2); ACCOUNTDISABLE is
bit 0x2 of userAccountControl ([MS-ADTS] §2.2.16); a server returns at most MaxValRange values of a multi-valued
attribute and names the slice ``member;range=0-1499`` ([MS-ADTS] §3.1.1.3.1.3.3); uSNChanged is per domain
controller, and a DC restored from backup gets a new invocationId ([MS-ADTS] §3.1.1.1.9, §7.1.1.2.2), so a
watermark is only valid on the same DC with the same invocationId — anything else forces a full read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.ldap.vendor import Attributes, Flavor

ACCOUNTDISABLE = 0x2
SHOW_DELETED_OID = "1.2.840.113556.1.4.417"
_RANGE = re.compile(r"^(?P<name>[^;]+);range=(?P<start>\d+)-(?P<end>\d+|\*)$", re.IGNORECASE)


def guid_text(values: list[bytes]) -> str:
    """objectGUID bytes → the canonical string AD tools show (``{...}`` without braces, lowercase)."""
    if not values or len(values[0]) != 16:
        return ""
    return str(uuid.UUID(bytes_le=bytes(values[0])))


def is_account_disabled(attributes: Attributes) -> bool:
    values = attributes.get("useraccountcontrol") or []
    if not values:
        return False
    try:
        return bool(int(str(values[0])) & ACCOUNTDISABLE)
    except ValueError:
        return False


FLAVOR = Flavor(
    name="ad",
    key_attribute="objectGUID",
    key=guid_text,
    users_filter="(&(objectCategory=person)(objectClass=user))",
    groups_filter="(objectClass=group)",
    user_attributes={
        "user_name": "sAMAccountName",
        "email": "mail",
        "display_name": "displayName",
        "given_name": "givenName",
        "family_name": "sn",
        "department": "department",
        "title": "title",
        # HR feeds into AD fill employeeID ([MS-ADA1] §2.209); employeeNumber is read where employeeID is empty.
        "employee_number": "employeeID",
        "manager": "manager",
        "group_name": "cn",
    },
    fallback_attributes={"employee_number": ("employeeNumber",)},
    group_member_attributes=("member",),
    state_attributes=("userAccountControl",),
    is_disabled=is_account_disabled,
    dn_attribute="distinguishedName",
    incremental="usn",
)


def ranged_slice(attributes: Mapping[str, Any], name: str) -> tuple[list[Any], int | None] | None:
    """Find the ``name;range=START-END`` slice among an entry's attributes.

    Returns its values and where the next slice starts (``None`` when END is ``*``, the last slice), or ``None``
    when the entry carries no ranged slice of that attribute (all values came in the plain attribute).
    """
    for key, values in attributes.items():
        match = _RANGE.match(key)
        if match and match.group("name").lower() == name.lower():
            end = match.group("end")
            return list(values), None if end == "*" else int(end) + 1
    return None


def collect_ranged(
    attributes: Mapping[str, Any], name: str, fetch: Callable[[str], Mapping[str, Any]], limit: int = 10_000
) -> list[Any]:
    """All values of a ranged attribute: the slice in the entry, then ``fetch("member;range=1500-*")`` (a base
    search of the same entry for that one attribute) until the slice ending in ``*``."""
    found = ranged_slice(attributes, name)
    if found is None:
        return list(attributes.get(name) or [])
    values, next_start = found
    for _ in range(limit):
        if next_start is None:
            return values
        following = ranged_slice(fetch(f"{name};range={next_start}-*"), name)
        if following is None:
            raise ValueError(f"the server returned no {name};range={next_start}-* slice")
        more, next_start = following
        values.extend(more)
    raise ValueError(f"{name} has more than {limit} ranged slices")


@dataclass(frozen=True)
class UsnPosition:
    """Where a USN watermark is valid: one DC (``dnsHostName``), one database incarnation (``invocationId``)."""

    server: str
    invocation_id: str
    usn: int

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "invocation_id": self.invocation_id, "usn": self.usn}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> UsnPosition:
        return cls(str(value["server"]), str(value["invocation_id"]), int(value["usn"]))


def position(root_dse: Mapping[str, Any], invocation_id: list[bytes]) -> UsnPosition:
    """The current position from the rootDSE (``dnsHostName``, ``highestCommittedUSN``) and the DC's NTDS
    Settings object's ``invocationId`` (read from the rootDSE's ``dsServiceName``)."""
    host = str((root_dse.get("dnsHostName") or [""])[0]).lower()
    usn = int(str((root_dse.get("highestCommittedUSN") or ["0"])[0]))
    return UsnPosition(host, guid_text(invocation_id), usn)


def full_read_reason(previous: UsnPosition, current: UsnPosition) -> str | None:
    """Why a stored watermark cannot be used against ``current``, or ``None`` when it can."""
    if previous.server != current.server:
        return f"the watermark is from {previous.server or 'another DC'}, this read reached {current.server}"
    if previous.invocation_id != current.invocation_id:
        return f"{current.server} has a new invocationId (restored from backup)"
    if current.usn < previous.usn:
        return f"{current.server}'s highestCommittedUSN went backwards ({previous.usn} → {current.usn})"
    return None


def deleted_filter(previous: UsnPosition) -> str:
    """Tombstones changed since the watermark; searched with the Show Deleted control ([MS-ADTS] §3.1.1.3.4.1.14)."""
    return f"(&(isDeleted=TRUE)(uSNChanged>={previous.usn + 1}))"
