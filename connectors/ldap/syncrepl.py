"""The LDAP Content Synchronization Operation's controls (RFC 4533), BER-encoded with pyasn1.

ldap3 has no syncrepl client, so the request control is encoded here and the state control, done control and
Sync Info intermediate message are decoded here; the search itself goes through ldap3 unchanged. Only the
refreshOnly mode is used (RFC 4533 §3.3.1): one search returns the changes since a cookie and ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import namedtype, namedval, tag, univ

SYNC_REQUEST_OID = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE_OID = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE_OID = "1.3.6.1.4.1.4203.1.9.1.3"
SYNC_INFO_OID = "1.3.6.1.4.1.4203.1.9.1.4"

REFRESH_ONLY = 1
STATE_PRESENT, STATE_ADD, STATE_MODIFY, STATE_DELETE = 0, 1, 2, 3


class _SyncRequestValue(univ.Sequence):
    """syncRequestValue ::= SEQUENCE { mode ENUMERATED, cookie syncCookie OPTIONAL, reloadHint BOOLEAN DEFAULT FALSE }
    (RFC 4533 §2.2)."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "mode", univ.Enumerated(namedValues=namedval.NamedValues(("refreshOnly", 1), ("refreshAndPersist", 3)))
        ),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("reloadHint", univ.Boolean(False)),
    )


class _SyncStateValue(univ.Sequence):
    """syncStateValue ::= SEQUENCE { state ENUMERATED, entryUUID syncUUID, cookie syncCookie OPTIONAL } (§2.3)."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("state", univ.Enumerated()),
        namedtype.NamedType("entryUUID", univ.OctetString()),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
    )


class _SyncDoneValue(univ.Sequence):
    """syncDoneValue ::= SEQUENCE { cookie syncCookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE } (§2.4)."""

    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
    )


class _RefreshPhase(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDone", univ.Boolean(True)),
    )


class _SyncIdSet(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
        namedtype.NamedType("syncUUIDs", univ.SetOf(componentType=univ.OctetString())),
    )


def _context(number: int, kind: type, constructed: bool) -> object:
    form = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return kind().subtype(implicitTag=tag.Tag(tag.tagClassContext, form, number))  # type: ignore[attr-defined]


class _SyncInfoValue(univ.Choice):
    """syncInfoValue ::= CHOICE { newcookie [0], refreshDelete [1], refreshPresent [2], syncIdSet [3] } (§2.5)."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("newcookie", _context(0, univ.OctetString, False)),
        namedtype.NamedType("refreshDelete", _context(1, _RefreshPhase, True)),
        namedtype.NamedType("refreshPresent", _context(2, _RefreshPhase, True)),
        namedtype.NamedType("syncIdSet", _context(3, _SyncIdSet, True)),
    )


def request_control(cookie: bytes | None) -> tuple[str, bool, bytes]:
    """The Sync Request control for a refreshOnly search, in ldap3's ``(oid, criticality, value)`` form (§2.2)."""
    value = _SyncRequestValue()
    value["mode"] = REFRESH_ONLY
    if cookie:
        value["cookie"] = cookie
    return (SYNC_REQUEST_OID, True, encoder.encode(value))


def entry_uuid_text(raw: bytes) -> str:
    """A syncUUID (16 octets, RFC 4533 §2.1) as the lowercase text form slapd shows in ``entryUUID``."""
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass(frozen=True, slots=True)
class SyncState:
    """The Sync State control of one entry: what happened to it and its UUID (§2.3)."""

    state: int
    entry_uuid: str
    cookie: bytes | None


def decode_state(value: bytes) -> SyncState:
    decoded, _ = decoder.decode(value, asn1Spec=_SyncStateValue())
    cookie = bytes(decoded["cookie"]) if decoded["cookie"].hasValue() else None
    return SyncState(int(decoded["state"]), entry_uuid_text(bytes(decoded["entryUUID"])), cookie)


@dataclass(frozen=True, slots=True)
class SyncDone:
    """The Sync Done control on the searchResultDone (§2.4): the new cookie and which refresh phase was used."""

    cookie: bytes | None
    refresh_deletes: bool


def decode_done(value: bytes) -> SyncDone:
    decoded, _ = decoder.decode(value, asn1Spec=_SyncDoneValue())
    cookie = bytes(decoded["cookie"]) if decoded["cookie"].hasValue() else None
    return SyncDone(cookie, bool(decoded["refreshDeletes"]))


@dataclass(slots=True)
class SyncInfo:
    """A Sync Info message (§2.5) reduced to what a refreshOnly client needs.

    A present phase (§3.3.1: every entry still in the content is named present or changed, and the client deletes
    the ones not named) only sets ``present_phase``: the caller then reads a complete snapshot instead of trusting an
    increment for deletions (docs/architecture.md, invariant 1), so the present UUIDs are not kept.
    """

    cookie: bytes | None = None
    refresh_deletes: bool | None = None
    deleted_uuids: list[str] = field(default_factory=list)
    present_phase: bool = False


def decode_info(value: bytes) -> SyncInfo:
    decoded, _ = decoder.decode(value, asn1Spec=_SyncInfoValue())
    choice = decoded.getName()
    component = decoded.getComponent()
    info = SyncInfo()
    if choice == "newcookie":
        info.cookie = bytes(component)
        return info
    if component["cookie"].hasValue():
        info.cookie = bytes(component["cookie"])
    if choice == "refreshPresent":
        info.present_phase = True
    elif choice == "syncIdSet":
        if bool(component["refreshDeletes"]):
            info.deleted_uuids = [entry_uuid_text(bytes(raw)) for raw in component["syncUUIDs"]]
            info.refresh_deletes = True
        else:
            info.present_phase = True
    return info
