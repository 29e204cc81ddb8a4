"""The seeded directory the LDAP tests read: people, a service account, groups of every kind, a referral."""

from __future__ import annotations

from tests.ldap.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICES = f"ou=services,{SUFFIX}"
SYNCD_DN = f"cn=syncd,{SUFFIX}"
SYNCD_PASSWORD = "syncd-bind-secret-7f3a"
LIMITED_DN = f"cn=limited,{SUFFIX}"

#: slapd.conf lines for the database: the service account may read everything without size limits, as every
#: syncrepl consumer must; ``cn=limited`` gets the default-like small limit that makes big reads fail.
LIMITS = f"""\
limits dn.exact="{SYNCD_DN}" size=unlimited time=unlimited
limits dn.exact="{LIMITED_DN}" size=3 size.prtotal=3
access to attrs=userPassword by anonymous auth by * none
access to * by * read
"""


def person(uid: str, given: str, family: str, **extra: str | list[str]) -> str:
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {family}",
        f"givenName: {given}",
        f"sn: {family}",
        f"mail: {uid}@example.org",
    ]
    for name, value in extra.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{name}: {item}")
    return "\n".join(lines)


def seed_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: {SERVICES}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {SYNCD_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: syncd\n"
        f"userPassword: {SYNCD_PASSWORD}",
        f"dn: {LIMITED_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: limited\n"
        f"userPassword: {SYNCD_PASSWORD}",
        person(
            "alice",
            "Alice",
            "Archer",
            displayName="Alice Archer",
            departmentNumber="IT",
            title="Head of IT",
            employeeNumber="1001",
        ),
        person("bob", "Bob", "Baker", departmentNumber="IT", title="Admin", manager=f"uid=alice,{PEOPLE}"),
        person("carol", "Carol", "Cole", pwdAccountLockedTime="000001010000Z"),
        person("dave", "Dave", "Dunn", employeeType="inactive"),
        person("eve", "Eve", "Evans", manager=f"UID=Alice, {PEOPLE.upper()}"),
        f"dn: uid=robot,{SERVICES}\nobjectClass: inetOrgPerson\nuid: robot\ncn: Robot\nsn: Robot",
        _group_of_names("IT Admins", [f"uid=alice,{PEOPLE}", f"uid=bob,{PEOPLE}"]),
        f"dn: cn=Engineering,{GROUPS}\nobjectClass: groupOfUniqueNames\ncn: Engineering\n"
        f"uniqueMember: uid=carol,{PEOPLE}\nuniqueMember: uid=eve,{PEOPLE}",
        f"dn: cn=posix-devs,{GROUPS}\nobjectClass: posixGroup\ncn: posix-devs\ngidNumber: 5000\n"
        "memberUid: alice\nmemberUid: dave\nmemberUid: ghost",
        _group_of_names("Parents", [f"cn=IT Admins,{GROUPS}", f"cn=Children,{GROUPS}"]),
        _group_of_names("Children", [f"cn=Parents,{GROUPS}", f"uid=robot,{SERVICES}", f"uid=eve,{PEOPLE}"]),
        f"dn: ou=remote,{SUFFIX}\nobjectClass: organizationalUnit\nou: remote",
        f"dn: uid=frank,ou=remote,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: frank\ncn: Frank\nsn: Fox",
        f"dn: ou=branch,ou=remote,{SUFFIX}\nobjectClass: referral\nobjectClass: extensibleObject\nou: branch\n"
        "ref: ldap://branch.example.org/ou=branch,ou=remote,dc=example,dc=org",
    ]
    return "\n\n".join(entries) + "\n"


def _group_of_names(name: str, members: list[str]) -> str:
    lines = [f"dn: cn={name},{GROUPS}", "objectClass: groupOfNames", f"cn: {name}"]
    lines.extend(f"member: {dn}" for dn in members)
    return "\n".join(lines)


__all__ = ["GROUPS", "PEOPLE", "ROOT_DN", "ROOT_PASSWORD", "SUFFIX", "SYNCD_DN", "SYNCD_PASSWORD", "seed_ldif"]
