"""Full reads of a real slapd: keys, attributes, account state, members of every group kind, paging, referrals."""

from __future__ import annotations

import json

import ldap3

from connectors.interface import Snapshot, UserRecord
from connectors.ldap import Connector
from tests.ldap.directory import GROUPS, PEOPLE, SUFFIX


def read_full(settings) -> Snapshot:
    result = Connector("hr-ldap", settings).read(None)
    assert isinstance(result, Snapshot)
    return result


def by_name(snapshot: Snapshot) -> dict[str, UserRecord]:
    return {user.user_name: user for user in snapshot.users}


def server_uuid(server, dn: str) -> str:
    with ldap3.Connection(server.url, auto_bind=True) as connection:
        connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
        return str(connection.entries[0].entryUUID)


def test_users_are_keyed_by_entry_uuid_and_carry_the_mapped_attributes(slapd, settings_for):
    snapshot = read_full(settings_for(slapd))

    alice = by_name(snapshot)["alice"]
    assert snapshot.complete and snapshot.problems == []
    assert alice.key == server_uuid(slapd, f"uid=alice,{PEOPLE}")
    assert (alice.email, alice.display_name, alice.given_name, alice.family_name) == (
        "alice@example.org",
        "Alice Archer",
        "Alice",
        "Archer",
    )
    assert (alice.department, alice.title, alice.employee_number, alice.active) == ("IT", "Head of IT", "1001", True)
    assert alice.attributes["dn"] == f"uid=alice,{PEOPLE}"


def test_only_users_under_the_users_base_are_read(slapd, settings_for):
    names = set(by_name(read_full(settings_for(slapd))))

    assert names == {"alice", "bob", "carol", "dave", "eve"}


def test_manager_dn_becomes_the_managers_key_whatever_its_spelling(slapd, settings_for):
    users = by_name(read_full(settings_for(slapd)))

    assert users["bob"].manager_key == users["alice"].key
    assert users["eve"].manager_key == users["alice"].key  # written as "UID=Alice, OU=PEOPLE,..."
    assert users["alice"].manager_key is None


def test_ppolicy_locked_account_is_inactive(slapd, settings_for):
    users = by_name(read_full(settings_for(slapd)))

    assert users["carol"].active is False
    assert users["bob"].active is True


def test_disabled_filter_marks_matching_users_inactive_and_keeps_them_in_the_snapshot(slapd, settings_for):
    plain = by_name(read_full(settings_for(slapd)))
    filtered = by_name(read_full(settings_for(slapd, disabled_filter="(employeeType=inactive)")))

    assert plain["dave"].active is True
    assert filtered["dave"].active is False
    assert set(filtered) == set(plain)


def test_group_members_from_member_unique_member_and_member_uid_become_user_keys(slapd, settings_for):
    snapshot = read_full(settings_for(slapd))
    users = by_name(snapshot)
    groups = {group.display_name: group for group in snapshot.groups}

    assert groups["IT Admins"].member_keys == {users["alice"].key, users["bob"].key}
    assert groups["Engineering"].member_keys == {users["carol"].key, users["eve"].key}
    assert groups["posix-devs"].member_keys == {users["alice"].key, users["dave"].key}
    assert groups["IT Admins"].key == server_uuid(slapd, f"cn=IT Admins,{GROUPS}")


def test_nested_groups_are_direct_member_keys_even_in_a_cycle(slapd, settings_for):
    groups = {group.display_name: group for group in read_full(settings_for(slapd)).groups}

    parents, children = groups["Parents"], groups["Children"]
    assert parents.member_keys == {groups["IT Admins"].key, children.key}
    assert parents.key in children.member_keys


def test_members_outside_the_read_scope_are_dropped_and_counted_without_making_the_read_incomplete(slapd, settings_for):
    snapshot = read_full(settings_for(slapd))
    groups = {group.display_name: group for group in snapshot.groups}

    assert groups["Children"].attributes["unresolved_members"] == 1  # uid=robot,ou=services
    assert groups["posix-devs"].attributes["unresolved_members"] == 1  # memberUid ghost
    assert "unresolved_members" not in groups["IT Admins"].attributes
    assert snapshot.complete


def test_page_size_does_not_change_what_is_read(slapd, settings_for):
    one = read_full(settings_for(slapd, page_size=1))
    many = read_full(settings_for(slapd, page_size=1000))

    assert sorted(one.users, key=lambda u: u.key) == sorted(many.users, key=lambda u: u.key)
    assert sorted(one.groups, key=lambda g: g.key) == sorted(many.groups, key=lambda g: g.key)


def test_openldap_is_detected_and_its_snapshot_carries_a_syncrepl_cursor(slapd, settings_for):
    snapshot = read_full(settings_for(slapd))

    assert json.loads(snapshot.cursor)["mode"] == "syncrepl"


def test_attribute_mapping_overrides_the_flavours_defaults(slapd, settings_for):
    settings = settings_for(slapd, attributes={"user_name": "mail", "department": "title"}, extra_attributes=["sn"])

    alice = next(u for u in read_full(settings).users if u.email == "alice@example.org")

    assert alice.user_name == "alice@example.org"
    assert alice.department == "Head of IT"
    assert alice.attributes["sn"] == "Archer"


def test_a_subtree_behind_a_referral_makes_the_snapshot_incomplete(slapd, settings_for):
    snapshot = read_full(settings_for(slapd, users_base=f"ou=remote,{SUFFIX}"))

    assert [u.user_name for u in snapshot.users] == ["frank"]
    assert snapshot.complete is False
    assert "ldap://branch.example.org" in snapshot.problems[0]
    assert snapshot.cursor is None
