"""Incremental reads of a real 389 Directory Server: the retro changelog mode (389-DS's default here) sees edits,
locks, deletes, moves out of the base, renames, joiners and membership changes; it never hands back a delta it
could not see whole; and a FreeIPA tree, keyed by ipaUniqueID, never misses a leaver."""

from __future__ import annotations

import ldap3
import pytest

from connectors.interface import Delta, Snapshot
from connectors.ldap import Connector
from connectors.ldap.vendor import ds389 as vendor
from connectors.ldap.vendor import flavor_named
from tests.ds389.directory import SUFFIX, SYNCD_DN, group, ipa_group, ipa_person, person

PEOPLE = "ou=people,{base}"
GROUPS = "ou=groups,{base}"


def _tree(count: int = 8) -> list:
    entries = [
        (PEOPLE, ["organizationalUnit"], {"ou": "people"}),
        (GROUPS, ["organizationalUnit"], {"ou": "groups"}),
    ]
    entries += [person(f"p{i}", base=PEOPLE) for i in range(count)]
    entries.append(group("Team", [f"uid=p{i},{PEOPLE}" for i in range(4)], base=GROUPS))
    entries.append(group("Outer", [f"cn=Team,{GROUPS}", f"uid=p5,{PEOPLE}"], base=GROUPS))
    return entries


def _keys(snapshot: Snapshot) -> dict[str, str]:
    return {user.user_name: user.key for user in snapshot.users}


def test_changelog_delta_sees_edits_locks_deletes_moves_renames_joiners_and_membership(ds_settings, subtree, ds_admin):
    base = subtree(_tree())
    connector = Connector("ds", ds_settings(users_base=f"ou=people,{base}", groups_base=f"ou=groups,{base}"))
    first = connector.read(None)
    assert isinstance(first, Snapshot) and first.complete
    assert '"mode": "changelog"' in (first.cursor or "")
    keys = _keys(first)
    team = next(g for g in first.groups if g.display_name == "Team")

    people = f"ou=people,{base}"
    ds_admin.modify(f"uid=p0,{people}", {"title": [(ldap3.MODIFY_REPLACE, ["Lead"])]})
    ds_admin.modify(f"uid=p1,{people}", {"nsAccountLock": [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    ds_admin.delete(f"uid=p2,{people}")
    ds_admin.modify_dn(f"uid=p3,{people}", "uid=p3", new_superior=f"ou=leavers,{SUFFIX}")
    ds_admin.modify_dn(f"uid=p4,{people}", "uid=p4renamed")
    ds_admin.add(*person("joiner", base=people))
    ds_admin.modify(f"cn=Team,ou=groups,{base}", {"member": [(ldap3.MODIFY_ADD, [f"uid=joiner,{people}"])]})
    delta = connector.read(first.cursor)

    assert isinstance(delta, Delta), "the changelog position should give a delta"
    changed = {user.user_name: user for user in delta.users}
    assert changed["p0"].title == "Lead" and changed["p0"].key == keys["p0"]
    assert changed["p1"].active is False
    assert changed["p4renamed"].key == keys["p4"]
    assert "joiner" in changed
    assert {"p5", "p6", "p7"}.isdisjoint(changed), "unchanged people are not read again"
    assert set(delta.removed_user_keys) >= {keys["p2"], keys["p3"]}
    assert keys["p0"] not in delta.removed_user_keys
    new_team = next(g for g in delta.groups if g.display_name == "Team")
    assert new_team.key == team.key
    assert new_team.member_keys == {keys["p0"], keys["p1"], changed["joiner"].key}
    assert connector.read(delta.cursor) == Delta(cursor=delta.cursor), "nothing changed since"
    ds_admin.delete(f"uid=p3,ou=leavers,{SUFFIX}")


def test_a_changelog_the_account_cannot_read_gives_a_full_read_not_a_blind_delta(
    ds_settings, subtree, ds_admin, tmp_path
):
    """An account without the changelog ACI sees no changelog entries; its increment must not look complete."""
    base = subtree(_tree(4))
    blind = f"cn=blind,{base}"
    ds_admin.add(blind, ["applicationProcess", "simpleSecurityObject"], {"cn": "blind", "userPassword": "blind-pw-1"})
    ds_admin.modify(
        base,
        {
            "aci": [
                (
                    ldap3.MODIFY_ADD,
                    [
                        '(targetattr="*||nsUniqueId||nsAccountLock||entrydn")(version 3.0; acl "blind reads"; '
                        f'allow (read, search, compare) userdn="ldap:///{blind}";)'
                    ],
                )
            ]
        },
    )
    secret = tmp_path / "blind"
    secret.write_text("blind-pw-1", encoding="utf-8")
    settings = ds_settings(
        users_base=f"ou=people,{base}",
        groups_base=f"ou=groups,{base}",
        bind_dn=blind,
        bind_password_file=str(secret),
        incremental="changelog",
    )
    connector = Connector("ds", settings)
    first = connector.read(None)
    assert isinstance(first, Snapshot) and first.complete and first.cursor
    deleted = _keys(first)["p2"]

    ds_admin.delete(f"uid=p2,ou=people,{base}")
    second = connector.read(first.cursor)

    assert isinstance(second, Snapshot) and second.complete
    assert deleted not in _keys(second).values()


@pytest.mark.parametrize(
    ("previous", "current", "first", "reason"),
    [
        (("ldap://a", 10), ("ldap://a", 10), 1, None),
        (("ldap://a", 10), ("ldap://a", 15), 5, None),
        (("ldap://a", 10), ("ldap://b", 15), 1, "from ldap://a"),
        (("ldap://a", 10), ("ldap://a", 4), 1, "went backwards"),
        (("ldap://a", 10), ("ldap://a", 30), 12, "trimmed"),
    ],
)
def test_a_changelog_position_holds_only_on_its_server_while_its_changes_are_kept(previous, current, first, reason):
    found = vendor.changelog_full_read_reason(
        vendor.ChangelogPosition(*previous), vendor.ChangelogPosition(*current), first
    )
    assert (found is None) if reason is None else (reason in found)


def test_a_freeipa_tree_reads_changes_from_the_changelog_and_a_leaver_by_a_full_read(ds_settings, subtree, ds_admin):
    """FreeIPA keys by ipaUniqueID, which the changelog does not record: changed people come as a delta, while a
    change that takes someone out of scope (here a delete) makes the read a full one, so the leaver is not missed.
    A delete elsewhere in the directory leaves the increment a delta."""
    users, groups = "cn=users,cn=accounts,{base}", "cn=groups,cn=accounts,{base}"
    base = subtree(
        [
            ("cn=accounts,{base}", ["nsContainer"], {"cn": "accounts"}),
            (users, ["nsContainer"], {"cn": "users"}),
            (groups, ["nsContainer"], {"cn": "groups"}),
            ("ou=elsewhere,{base}", ["organizationalUnit"], {"ou": "elsewhere"}),
            *(ipa_person(f"fi{i}", 500 + i, base=users) for i in range(4)),
            ipa_person("host1", 600, base="ou=elsewhere,{base}"),
            ipa_group("fi-team", [f"uid=fi0,{users}"], base=groups),
        ]
    )
    users, groups = users.format(base=base), groups.format(base=base)
    connector = Connector("ds", ds_settings(users_base=users, groups_base=groups))
    first = connector.read(None)
    assert isinstance(first, Snapshot) and first.complete
    assert '"mode": "changelog"' in (first.cursor or "")
    keys = _keys(first)

    ds_admin.modify(f"uid=fi1,{users}", {"nsAccountLock": [(ldap3.MODIFY_REPLACE, ["true"])]})
    ds_admin.modify(f"cn=fi-team,{groups}", {"member": [(ldap3.MODIFY_ADD, [f"uid=fi2,{users}"])]})
    ds_admin.delete(f"uid=host1,ou=elsewhere,{base}")
    delta = connector.read(first.cursor)

    assert isinstance(delta, Delta)
    changed = {user.user_name: user for user in delta.users}
    assert changed["fi1"].active is False and changed["fi1"].key == keys["fi1"]
    team = next(g for g in delta.groups if g.display_name == "fi-team")
    assert team.member_keys == {keys["fi0"], keys["fi2"]}
    assert not delta.removed_user_keys

    ds_admin.delete(f"uid=fi3,{users}")
    after = connector.read(delta.cursor)

    assert isinstance(after, Snapshot) and after.complete
    assert set(_keys(after)) == {"fi0", "fi1", "fi2"}


def test_a_delta_resolves_members_with_escaped_and_multi_valued_rdns(ds_settings, subtree, ds_admin):
    """A member DN whose RDN has an escaped comma or two values is looked up by 389-DS's entrydn."""
    people = "ou=people,{base}"
    odd = [
        ("uid=o\\2Cbrien," + people, ["inetOrgPerson"], {"uid": "o,brien", "cn": "O Brien", "sn": "Brien"}),
        ("cn=Ann Lee+uid=alee," + people, ["inetOrgPerson"], {"uid": "alee", "cn": "Ann Lee", "sn": "Lee"}),
    ]
    base = subtree([*_tree(6), *odd])
    people, groups = people.format(base=base), f"ou=groups,{base}"
    connector = Connector("ds", ds_settings(users_base=people, groups_base=groups, incremental="changelog"))
    first = connector.read(None)
    assert isinstance(first, Snapshot) and first.complete
    keys = _keys(first)

    ds_admin.modify(
        f"cn=Team,{groups}",
        {"member": [(ldap3.MODIFY_ADD, [f"uid=o\\2Cbrien,{people}", f"cn=Ann Lee+uid=alee,{people}"])]},
    )
    delta = connector.read(first.cursor)

    assert isinstance(delta, Delta)
    team = next(g for g in delta.groups if g.display_name == "Team")
    assert {keys["o,brien"], keys["alee"]} <= team.member_keys
    assert "unresolved_members" not in team.attributes, team.attributes


def test_a_role_lock_is_seen_by_the_next_increment(ds389, ds_settings, subtree, ds_admin):
    """``dsidm role lock`` locks the role's members through a class of service: nsAccountLock turns true on people
    whose entries did not change, so the changelog names only the role entries and the read must be full."""
    server = ds389[0]
    role = "cn=Temps,{base}"
    base = subtree(
        [
            *_tree(4),
            (role, ["nsSimpleRoleDefinition", "nsManagedRoleDefinition"], {"cn": "Temps"}),
            person("temp1", base=PEOPLE, nsRoleDN=role),
        ]
    )
    connector = Connector("ds", ds_settings(users_base=f"ou=people,{base}", groups_base=f"ou=groups,{base}"))
    first = connector.read(None)
    assert next(u for u in first.users if u.user_name == "temp1").active is True

    server.dsidm("role", "lock", role.format(base=base))
    after = connector.read(first.cursor)

    assert next(u for u in after.users if u.user_name == "temp1").active is False
    server.dsidm("role", "unlock", role.format(base=base))


def test_without_a_retro_changelog_the_389_flavours_fall_back_to_modify_timestamp(ds389, ds_settings):
    """The mode is chosen from the rootDSE. The session is replaced by its rootDSE alone (the session's instance
    keeps a changelog, and a second instance without one would cost ~10 s for one attribute's absence)."""

    class RootOnly:
        def __init__(self, root_dse: dict) -> None:
            self.root_dse = root_dse

    settings = ds_settings(users_base="ou=people,dc=example,dc=org")
    connector = Connector("ds", settings)
    with_changelog = {"vendorName": ["389 Project"], "changelog": ["cn=changelog"], "lastchangenumber": ["7"]}
    without = {"vendorName": ["389 Project"]}
    for flavor in ("389ds", "freeipa"):
        assert connector.mode(flavor_named(flavor), RootOnly(with_changelog)) == "changelog"
        assert connector.mode(flavor_named(flavor), RootOnly(without)) == "timestamp"


def test_forced_timestamp_mode_reads_changes_from_389ds(ds_settings, subtree, ds_admin):
    base = subtree(_tree(3))
    connector = Connector(
        "ds", ds_settings(users_base=f"ou=people,{base}", groups_base=f"ou=groups,{base}", incremental="timestamp")
    )
    first = connector.read(None)
    ds_admin.modify(f"uid=p1,ou=people,{base}", {"title": [(ldap3.MODIFY_REPLACE, ["Changed"])]})
    delta = connector.read(first.cursor)
    assert isinstance(delta, Delta)
    assert {user.user_name: user.title for user in delta.users}["p1"] == "Changed"


def test_a_person_moved_where_the_account_cannot_see_is_removed_only_by_a_full_read(ds_settings, subtree, ds_admin):
    """Removal needs evidence: a delete in the changelog, or the changed entry found outside the scope. A person
    moved into a subtree bind_dn may not read is found nowhere, so the read is a full one (which no longer has
    them), never a delta guessing."""
    base = subtree([*_tree(4), ("ou=hidden,{base}", ["organizationalUnit"], {"ou": "hidden"})])
    hide = f'(targetattr="*")(version 3.0; acl "hidden from syncd"; deny (all) userdn="ldap:///{SYNCD_DN}";)'
    ds_admin.modify(f"ou=hidden,{base}", {"aci": [(ldap3.MODIFY_ADD, [hide])]})
    connector = Connector("ds", ds_settings(users_base=f"ou=people,{base}", groups_base=f"ou=groups,{base}"))
    first = connector.read(None)
    assert isinstance(first, Snapshot) and first.complete and '"mode": "changelog"' in (first.cursor or "")

    ds_admin.modify_dn(f"uid=p1,ou=people,{base}", "uid=p1", new_superior=f"ou=hidden,{base}")
    after = connector.read(first.cursor)

    assert isinstance(after, Snapshot) and after.complete
    assert "p1" not in _keys(after)
