"""``syncd sync`` of a real 389-DS source: a first full read, then a change (a leaver locked, one deleted, one moved
out of the base, people moved between nested groups, a rename, a joiner, an unlock) read through the retro
changelog, with every member compared person by person with what the rules imply."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import ldap3
import pytest

from syncd.store.models import Identity, Source
from tests.directory_checks import ldap_sync_config, members
from tests.ds389.directory import SYNCD_DN, group, ipa_group, ipa_person, person


@dataclass
class Directory:
    """What the test's subtree holds: person uid → email, locked uids, group → direct people and child groups."""

    emails: dict[str, str] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    members: dict[str, set[str]] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)

    def everyone_in(self, name: str) -> set[str]:
        found = set(self.members.get(name, set()))
        for child in self.children.get(name, set()):
            found |= self.everyone_in(child)
        return found


#: The org's rules: a role from one nested group, teams from others.
RULES = {"Admins": ("role", "admin"), "Engineering": ("team", "engineering"), "All Staff": ("team", "staff")}
RULES_TOML = """
[[orgs.rules]]
group = "Admins"
role = "admin"

[[orgs.rules]]
group = "Engineering"
team = "engineering"

[[orgs.rules]]
group = "All Staff"
team = "staff"
"""


def expected(
    directory: Directory, gone: set[str], were: dict[str, tuple[str, str | None, set[str]]]
) -> dict[str, tuple[str, str | None, set[str]]]:
    """email → (status, role, teams) the rules imply; role and teams only for active members. A person deleted,
    moved out or locked is suspended if they were a member (``were``), and never becomes one otherwise."""
    result: dict[str, tuple[str, str | None, set[str]]] = {}
    for uid, email in directory.emails.items():
        if uid in gone or uid in directory.locked:
            if email in were:
                result[email] = ("suspended", None, set())
            continue
        role = "member"
        teams: set[str] = set()
        for name, (kind, value) in RULES.items():
            if uid in directory.everyone_in(name):
                if kind == "role":
                    role = value
                else:
                    teams.add(value)
        result[email] = ("active", role, teams)
    return result


def observed(cli, path) -> dict[str, tuple[str, str | None, set[str]]]:
    result: dict[str, tuple[str, str | None, set[str]]] = {}
    for email, row in members(cli, path).items():
        if row["status"] == "suspended":
            result[email] = ("suspended", None, set())
        else:
            result[email] = (row["status"], row["role"], {team["team"] for team in row["teams"]})
    return result


def _ipa_person(uid: str, base: str, locked: bool = False) -> tuple:
    return ipa_person(uid, int(uid[1:]), locked=locked, base=base)


#: Where each flavour's tree keeps people and groups, and how it makes them.
LAYOUTS = {
    "389ds": ("ou=people,{base}", "ou=groups,{base}", person, group),
    "freeipa": ("cn=users,cn=accounts,{base}", "cn=groups,cn=accounts,{base}", _ipa_person, ipa_group),
}


def _tree(directory: Directory, flavor: str) -> list:
    people, groups, make_person, make_group = LAYOUTS[flavor]
    entries = [
        ("ou=leavers,{base}", ["organizationalUnit"], {"ou": "leavers"}),
    ]
    if flavor == "freeipa":
        entries.append(("cn=accounts,{base}", ["nsContainer"], {"cn": "accounts"}))
        entries += [(people, ["nsContainer"], {"cn": "users"}), (groups, ["nsContainer"], {"cn": "groups"})]
    else:
        entries += [
            (people, ["organizationalUnit"], {"ou": "people"}),
            (groups, ["organizationalUnit"], {"ou": "groups"}),
        ]
    for index in range(30):
        uid = f"e{index:02d}"
        directory.emails[uid] = f"{uid}@example.org"
        locked = index == 29
        if locked:
            directory.locked.add(uid)
        entries.append(make_person(uid, base=people, locked=locked))
    directory.members = {
        "Admins": {"e00", "e01"},
        "Engineering": {f"e{i:02d}" for i in range(2, 10)},
        "Sales": {f"e{i:02d}" for i in range(10, 20)},
        "Support": {f"e{i:02d}" for i in range(20, 30)},
        "All Staff": set(),
    }
    directory.children = {"Engineering": {"Admins"}, "All Staff": {"Engineering", "Sales", "Support"}}
    for name, uids in directory.members.items():
        member_dns = [f"uid={uid},{people}" for uid in sorted(uids)]
        member_dns += [f"cn={child},{groups}" for child in sorted(directory.children.get(name, ()))]
        entries.append(make_group(name, member_dns, base=groups))
    return entries


@pytest.mark.parametrize("flavor", ["389ds", "freeipa"])
def test_syncd_sync_of_389ds_first_read_then_changelog_increment_is_right_person_by_person(
    cli, write_config, sqlite_url, ds389, ds_password_file, subtree, ds_admin, caplog, flavor
):
    """For FreeIPA (keyed by ipaUniqueID, which the changelog lacks) the leavers make the second read a full one."""
    server = ds389[0]
    directory = Directory()
    base = subtree(_tree(directory, flavor))
    people, groups = (where.format(base=base) for where in LAYOUTS[flavor][:2])
    path = write_config(
        ldap_sync_config(
            sqlite_url,
            source="ds389",
            url=server.url,
            bind_dn=SYNCD_DN,
            password_file=ds_password_file,
            users_base=people,
            groups_base=groups,
            domain="example.org",
            org=f'match_on = "email"\n{RULES_TOML}[orgs.policy]\nguard_max_percent = 50\n',
            settings="page_size = 7\n",
        )
    )

    first = cli("--config", str(path), "sync", "ds389")
    assert first.code == 0, first.stdout + first.stderr
    before = observed(cli, path)
    assert before == expected(directory, gone=set(), were={})
    assert "e29@example.org" not in before, "a locked account never becomes a member"
    assert '"mode": "changelog"' in Source.get(Source.name == "ds389").cursor
    key_attribute = "ipaUniqueID" if flavor == "freeipa" else "nsUniqueId"
    ds_admin.search(people, "(uid=e00)", attributes=[key_attribute])
    assert Identity.get(Identity.user_name == "e00").key == str(ds_admin.entries[0][key_attribute])

    # The change: leavers locked, deleted and moved out of the base; moves between (nested) groups; a rename; a
    # joiner; a returner unlocked.
    modify = ds_admin.modify
    modify(f"uid=e03,{people}", {"nsAccountLock": [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    directory.locked.add("e03")
    ds_admin.delete(f"uid=e11,{people}")
    ds_admin.modify_dn(f"uid=e12,{people}", "uid=e12", new_superior=f"ou=leavers,{base}")
    modify(f"cn=Sales,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=e13,{people}"])]})
    modify(f"cn=Engineering,{groups}", {"member": [(ldap3.MODIFY_ADD, [f"uid=e13,{people}"])]})
    directory.members["Sales"].discard("e13")
    directory.members["Engineering"].add("e13")
    modify(f"cn=Engineering,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=e04,{people}"])]})
    modify(f"cn=Admins,{groups}", {"member": [(ldap3.MODIFY_ADD, [f"uid=e04,{people}"])]})
    directory.members["Engineering"].discard("e04")
    directory.members["Admins"].add("e04")
    modify(f"cn=All Staff,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"cn=Support,{groups}"])]})
    directory.children["All Staff"].discard("Support")
    ds_admin.modify_dn(f"uid=e14,{people}", "uid=e14renamed")
    modify(f"uid=e14renamed,{people}", {"displayName": [(ldap3.MODIFY_REPLACE, ["E14 Renamed"])]})
    ds_admin.add(*LAYOUTS[flavor][2]("e30", base=people))
    modify(f"cn=Engineering,{groups}", {"member": [(ldap3.MODIFY_ADD, [f"uid=e30,{people}"])]})
    directory.emails["e30"] = "e30@example.org"
    directory.members["Engineering"].add("e30")
    modify(f"uid=e29,{people}", {"nsAccountLock": [(ldap3.MODIFY_DELETE, [])]})
    directory.locked.discard("e29")

    with caplog.at_level(logging.INFO, logger="connectors.ldap"):
        second = cli("--config", str(path), "sync", "ds389")
    assert second.code == 0, second.stdout + second.stderr
    full_reads = [r for r in caplog.records if r.getMessage() == "ldap full read"]
    assert len(full_reads) == (1 if flavor == "freeipa" else 0), "389-DS reads a delta, FreeIPA in full"
    want = expected(directory, gone={"e11", "e12"}, were=before)
    got = observed(cli, path)
    assert got == want, {
        email: (got.get(email), want.get(email)) for email in set(got) | set(want) if got.get(email) != want.get(email)
    }
    ds_admin.delete(f"uid=e12,ou=leavers,{base}")
