"""The generated directories the 389-DS tests read: a plain 389-DS tree and a FreeIPA-shaped one.

Plain (``ou=people`` / ``ou=groups``): ``PEOPLE_COUNT`` people, every ``LOCK_EVERY``-th one locked with
``nsAccountLock: TRUE`` (what ``dsidm account lock`` sets); department groups nested in ``All Staff``, ``Admins``
nested in ``Engineering`` nested in ``All Staff``, and a ``groupOfUniqueNames``. FreeIPA-shaped
(``cn=users,cn=accounts`` / ``cn=groups,cn=accounts``): posixAccount users with ``ipaUniqueID`` and FreeIPA's
``ipausers`` / nested ``admins`` groups. The ``Layout`` records what the tests expect (memberships, locked people).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SYNCD_DN = f"cn=syncd,ou=services,{SUFFIX}"
SYNCD_PASSWORD = "ds389-syncd-bind-secret"
IPA_USERS = f"cn=users,cn=accounts,{SUFFIX}"
IPA_GROUPS = f"cn=groups,cn=accounts,{SUFFIX}"
PEOPLE_COUNT = 120
LOCK_EVERY = 10
DEPARTMENTS = ("Sales", "Support", "Platform", "Finance")

#: The service account may search and read everything (on 389-DS 2.3 ``targetattr="*"`` covers the operational
#: nsUniqueId and nsAccountLock too).
READ_ACI = (
    f'(targetattr="*")(version 3.0; acl "syncd reads"; allow (read, search, compare) userdn="ldap:///{SYNCD_DN}";)'
)

#: ipaUniqueID and ipaObject as FreeIPA defines them (freeipa install/share/60basev2.ldif), for the FreeIPA tree.
IPA_SCHEMA = {
    "attributeTypes": [
        "( 2.16.840.1.113730.3.8.3.1 NAME 'ipaUniqueID' DESC 'Unique identifier' EQUALITY caseIgnoreMatch "
        "ORDERING caseIgnoreOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 X-ORIGIN 'IPA v2' )"
    ],
    "objectClasses": [
        "( 2.16.840.1.113730.3.8.4.1 NAME 'ipaObject' DESC 'IPA objectclass' AUXILIARY MUST ( ipaUniqueID ) "
        "X-ORIGIN 'IPA v2' )"
    ],
}


@dataclass
class Layout:
    """What a generated directory holds: people by uid, locked uids, group → direct member uids / child groups."""

    people: list[str] = field(default_factory=list)
    locked: set[str] = field(default_factory=set)
    members: dict[str, set[str]] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)

    def everyone_in(self, group: str) -> set[str]:
        """The uids in ``group`` directly or through nested groups."""
        found = set(self.members.get(group, set()))
        for child in self.children.get(group, set()):
            found |= self.everyone_in(child)
        return found


Entry = tuple[str, list[str], dict[str, list[str] | str]]


def uid_of(index: int) -> str:
    return f"user{index:04d}"


def base_entries() -> list[Entry]:
    return [
        (f"ou=people,{SUFFIX}", ["organizationalUnit"], {"ou": "people"}),
        (f"ou=groups,{SUFFIX}", ["organizationalUnit"], {"ou": "groups"}),
        (f"ou=services,{SUFFIX}", ["organizationalUnit"], {"ou": "services"}),
        (f"ou=leavers,{SUFFIX}", ["organizationalUnit"], {"ou": "leavers"}),
        (
            SYNCD_DN,
            ["applicationProcess", "simpleSecurityObject"],
            {"cn": "syncd", "userPassword": SYNCD_PASSWORD},
        ),
    ]


def person(uid: str, base: str = PEOPLE, locked: bool = False, department: str = "", **extra: str) -> Entry:
    given, family = uid.capitalize(), "Tester"
    attributes: dict[str, list[str] | str] = {
        "uid": uid,
        "cn": f"{given} {family}",
        "givenName": given,
        "sn": family,
        "mail": f"{uid}@example.org",
        **extra,
    }
    if department:
        attributes["departmentNumber"] = department
    if locked:
        attributes["nsAccountLock"] = "TRUE"
    return (f"uid={uid},{base}", ["inetOrgPerson"], attributes)


def group(name: str, members: list[str], base: str = GROUPS, kind: str = "groupOfNames") -> Entry:
    attribute = "uniqueMember" if kind == "groupOfUniqueNames" else "member"
    values: dict[str, list[str] | str] = {"cn": name}
    if members:
        values[attribute] = members
    return (f"cn={name},{base}", [kind], values)


def plain_directory(count: int = PEOPLE_COUNT) -> tuple[list[Entry], Layout]:
    """People, locked people and nested groups under ou=people / ou=groups."""
    layout = Layout()
    entries = base_entries()
    for index in range(count):
        uid = uid_of(index)
        locked = index % LOCK_EVERY == LOCK_EVERY - 1
        department = DEPARTMENTS[index % len(DEPARTMENTS)]
        entries.append(person(uid, locked=locked, department=department, employeeNumber=str(1000 + index)))
        layout.people.append(uid)
        if locked:
            layout.locked.add(uid)
        layout.members.setdefault(department, set()).add(uid)
    admins = [uid_of(i) for i in range(0, 6)]
    engineers = [uid_of(i) for i in range(6, 30)]
    layout.members["Admins"] = set(admins)
    layout.members["Engineering"] = set(engineers)
    layout.members["All Staff"] = set()
    layout.members["Contractors"] = {uid_of(i) for i in range(30, 36)}
    layout.children["Engineering"] = {"Admins"}
    layout.children["All Staff"] = {*DEPARTMENTS, "Engineering"}
    for name in DEPARTMENTS:
        entries.append(group(name, [f"uid={u},{PEOPLE}" for u in sorted(layout.members[name])]))
    entries.append(group("Admins", [f"uid={u},{PEOPLE}" for u in admins]))
    entries.append(group("Engineering", [*(f"uid={u},{PEOPLE}" for u in engineers), f"cn=Admins,{GROUPS}"]))
    entries.append(group("All Staff", [f"cn={name},{GROUPS}" for name in (*DEPARTMENTS, "Engineering")]))
    entries.append(
        group(
            "Contractors",
            [f"uid={u},{PEOPLE}" for u in sorted(layout.members["Contractors"])],
            kind="groupOfUniqueNames",
        )
    )
    return entries, layout


def ipa_person(uid: str, number: int, locked: bool = False, base: str = IPA_USERS) -> Entry:
    dn, _, attributes = person(uid, base=base, locked=locked)
    attributes.update(
        {
            "ipaUniqueID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{uid}.ipa.example.org")),
            "uidNumber": str(10_000 + number),
            "gidNumber": str(10_000 + number),
            "homeDirectory": f"/home/{uid}",
            "ou": "Research",
        }
    )
    return (dn, ["inetOrgPerson", "posixAccount", "ipaObject"], attributes)


def ipa_group(name: str, members: list[str], base: str = IPA_GROUPS) -> Entry:
    dn, classes, attributes = group(name, members, base=base)
    attributes["ipaUniqueID"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.groups.ipa.example.org"))
    return (dn, [*classes, "ipaObject"], attributes)


def ipa_directory(count: int = 20) -> tuple[list[Entry], Layout]:
    """A FreeIPA-shaped tree: cn=accounts with its users and groups containers, FreeIPA's default groups."""
    layout = Layout()
    entries: list[Entry] = [
        (f"cn=accounts,{SUFFIX}", ["nsContainer"], {"cn": "accounts"}),
        (IPA_USERS, ["nsContainer"], {"cn": "users"}),
        (IPA_GROUPS, ["nsContainer"], {"cn": "groups"}),
    ]
    for index in range(count):
        uid = f"ipa{index:03d}"
        locked = index % 5 == 4
        entries.append(ipa_person(uid, index, locked=locked))
        layout.people.append(uid)
        if locked:
            layout.locked.add(uid)
    layout.members["ipausers"] = set(layout.people)
    layout.members["admins"] = {"ipa000", "ipa001"}
    layout.members["editors"] = {"ipa002"}
    layout.children["editors"] = {"admins"}
    entries.append(ipa_group("ipausers", [f"uid={u},{IPA_USERS}" for u in layout.people]))
    entries.append(ipa_group("admins", [f"uid={u},{IPA_USERS}" for u in sorted(layout.members["admins"])]))
    entries.append(ipa_group("editors", [f"uid=ipa002,{IPA_USERS}", f"cn=admins,{IPA_GROUPS}"]))
    return entries, layout
