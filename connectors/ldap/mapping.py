"""LDAP entries → :class:`UserRecord` / :class:`GroupRecord`: which attributes to ask for and how to read them.

Only mapped attributes are requested (docs/architecture.md, "Data flow": protocol in, records out), so a read moves
no more data than the records need. DN-valued attributes (``manager``, ``member``, ``uniqueMember``, ``memberOf``) are
returned raw here; the reader resolves them to keys once it knows the keys of the entries they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.interface import DESCRIPTIVE_FIELDS, GroupRecord, UserRecord
from connectors.ldap.settings import Settings
from connectors.ldap.vendor import Flavor

_USER_FIELDS = ("email", *DESCRIPTIVE_FIELDS)


def normal_dn(dn: str) -> str:
    """A DN in a form two spellings of the same DN share (case and spaces after commas, RFC 4514 §2.4 aside)."""
    lowered = dn.lower()
    if ", " not in lowered and " ," not in lowered:
        return lowered
    return ",".join(part.strip() for part in lowered.split(","))


class Unmappable(ValueError):
    """An entry lacks what a record needs (its key or its user name)."""


@dataclass(frozen=True, slots=True)
class PendingUser:
    """A user's record fields, built into a :class:`UserRecord` once its DN-valued attributes have become keys
    (one construction per user: records are frozen, and a copy per resolved manager would double the cost)."""

    values: dict[str, Any]
    dn: str
    manager_dn: str | None
    member_of: tuple[str, ...]

    @property
    def key(self) -> str:
        return str(self.values["key"])

    def build(self, manager_key: str | None = None, groups: tuple[str, ...] = ()) -> UserRecord:
        return UserRecord(**self.values, manager_key=manager_key, groups=groups)


@dataclass(frozen=True, slots=True)
class PendingGroup:
    record: GroupRecord
    dn: str
    member_dns: tuple[str, ...]
    member_uids: tuple[str, ...]


class EntryMapping:
    """The attribute names of one source (the flavour's defaults overridden by ``attributes``) and the mappers."""

    def __init__(self, flavor: Flavor, settings: Settings) -> None:
        self.flavor = flavor
        names = {**flavor.user_attributes, **settings.attributes}
        self.names = names
        self.key = flavor.key_attribute
        self.user_name = names["user_name"]
        self.manager = names.get("manager")
        self.group_name = names.get("group_name", "cn")
        self.extra = tuple(settings.extra_attributes)
        self.member_of = settings.member_of
        self.fields = tuple((field, names[field]) for field in _USER_FIELDS if names.get(field))
        self._lower_fields = tuple((field, attr.lower()) for field, attr in self.fields)
        # A flavour's fallbacks apply only while the field keeps the flavour's own attribute (no override).
        self.fallbacks = {
            field: tuple(a.lower() for a in attrs)
            for field, attrs in flavor.fallback_attributes.items()
            if field not in settings.attributes
        }
        fallback_names = [
            attr for field, attrs in flavor.fallback_attributes.items() if field in self.fallbacks for attr in attrs
        ]
        user = [
            self.key,
            self.user_name,
            *(attr for _, attr in self.fields),
            *fallback_names,
            *flavor.state_attributes,
            *self.extra,
        ]
        if self.manager:
            user.append(self.manager)
        if self.member_of:
            user.append("memberOf")
        self.user_attributes = _unique(user)
        self.group_attributes = _unique([self.key, self.group_name, *flavor.group_member_attributes])
        self.dn_member_attributes = tuple(a for a in flavor.group_member_attributes if a.lower() != "memberuid")
        self.uid_member_attributes = tuple(a for a in flavor.group_member_attributes if a.lower() == "memberuid")

    def entry_key(self, entry: Mapping[str, Any]) -> str:
        raw = entry["raw_attributes"].get(self.key) or []
        key = self.flavor.key(raw)
        if not key:
            raise Unmappable(f"{entry['dn']} has no {self.key}")
        return key

    def user(self, entry: Mapping[str, Any], active: bool = True) -> PendingUser:
        """Map a user entry; ``active`` is false when it matched ``disabled_filter``.

        Attribute names compare case-insensitively (RFC 4512 §2.5): the entry's names are lower-cased once into a
        plain dict, and the flavour's account-state check reads that dict with lower-case names.
        """
        attributes = {name.lower(): values for name, values in entry["attributes"].items()}
        key = self.entry_key(entry)
        user_name = _first(attributes, self.user_name)
        if not user_name:
            raise Unmappable(f"{entry['dn']} has no {self.user_name}")
        values: dict[str, Any] = {}
        for field, attr in self._lower_fields:
            found = attributes.get(attr)
            values[field] = str(found[0]) or None if found else None
        for field, names in self.fallbacks.items():
            for name in names:
                if values.get(field):
                    break
                found = attributes.get(name)
                values[field] = str(found[0]) or None if found else None
        if not values.get("display_name"):
            values["display_name"] = _first(attributes, "cn") or _joined(values)
        extra: dict[str, Any] = {"dn": entry["dn"]}
        for name in self.extra:
            found = attributes.get(name.lower())
            if found:
                extra[name] = [str(v) for v in found] if len(found) > 1 else str(found[0])
        values["key"] = key
        values["user_name"] = user_name
        values["active"] = active and not self.flavor.is_disabled(attributes)
        values["attributes"] = extra
        manager = _first(attributes, self.manager) if self.manager else None
        member_of = tuple(str(dn) for dn in attributes.get("memberof") or ()) if self.member_of else ()
        return PendingUser(values, entry["dn"], manager, member_of)

    def group(self, entry: Mapping[str, Any]) -> PendingGroup:
        attributes = {name.lower(): values for name, values in entry["attributes"].items()}
        key = self.entry_key(entry)
        name = _first(attributes, self.group_name) or entry["dn"]
        member_dns: list[str] = []
        for attr in self.dn_member_attributes:
            member_dns.extend(str(dn) for dn in attributes.get(attr.lower()) or ())
        uids: list[str] = []
        for attr in self.uid_member_attributes:
            uids.extend(str(uid) for uid in attributes.get(attr.lower()) or ())
        record = GroupRecord(key=key, display_name=name, attributes={"dn": entry["dn"]})
        return PendingGroup(record, entry["dn"], tuple(member_dns), tuple(uids))


def _first(attributes: Mapping[str, Any], name: str | None) -> str | None:
    """The first value of ``name`` in a lower-cased attribute dict."""
    if not name:
        return None
    values = attributes.get(name.lower())
    if not values:
        return None
    value = values[0] if isinstance(values, list | tuple) else values
    text = value if isinstance(value, str) else str(value)
    return text or None


def _joined(values: Mapping[str, str | None]) -> str | None:
    parts = [values.get("given_name"), values.get("family_name")]
    return " ".join(p for p in parts if p) or None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())
