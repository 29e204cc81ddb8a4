"""Incremental reads of a real slapd by syncrepl refreshOnly (RFC 4533): adds, modifies, renames, deletes and
membership changes as explicit deltas, and a full snapshot whenever the cookie cannot say what was deleted."""

from __future__ import annotations

import json
import time

import ldap3
import pytest

from connectors.interface import Delta, Snapshot
from connectors.ldap import Connector, incremental
from connectors.ldap import cursor as cursors
from connectors.ldap.incremental import Refresh
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.session import Session
from connectors.ldap.vendor import flavor_named
from tests.ldap.conftest import start_directory
from tests.ldap.directory import GROUPS, PEOPLE, SYNCD_PASSWORD


def full(settings) -> Snapshot:
    snapshot = Connector("hr-ldap", settings).read(None)
    assert isinstance(snapshot, Snapshot) and snapshot.complete
    return snapshot


def delta_after(settings, cursor: str) -> Delta:
    result = Connector("hr-ldap", settings).read(cursor)
    assert isinstance(result, Delta), f"expected a delta, got a {type(result).__name__}"
    return result


def keys(snapshot: Snapshot) -> dict[str, str]:
    return {u.user_name: u.key for u in snapshot.users} | {g.display_name: g.key for g in snapshot.groups}


def add_person(connection: ldap3.Connection, uid: str, **extra: str) -> None:
    connection.add(
        f"uid={uid},{PEOPLE}",
        ["inetOrgPerson"],
        {"uid": uid, "cn": uid.title(), "sn": uid.title(), "mail": f"{uid}@example.org", **extra},
    )


def wait_for_member(connection: ldap3.Connection, group: str, member: str) -> None:
    """refint rewrites member DNs in a background task after a rename (slapo-refint(5)); wait for it, bounded."""
    for _ in range(250):
        connection.search(group, f"(member={member})", ldap3.BASE, attributes=["1.1"])
        if connection.entries:
            return
        time.sleep(0.02)
    raise AssertionError(f"refint did not rewrite {group} within 5 s")


def test_no_changes_give_an_empty_delta_with_a_usable_cursor(fresh_slapd, settings_for):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)

    delta = delta_after(settings, snapshot.cursor)

    assert (delta.users, delta.groups, delta.removed_user_keys, delta.removed_group_keys) == ([], [], [], [])
    assert isinstance(delta_after(settings, delta.cursor), Delta)


def test_adds_modifies_and_deletes_arrive_as_upserts_and_explicit_removals(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)
    before = keys(snapshot)
    root = admin(fresh_slapd)

    add_person(root, "gina", manager=f"uid=alice,{PEOPLE}")
    root.modify(f"uid=bob,{PEOPLE}", {"title": [(ldap3.MODIFY_REPLACE, ["Lead Admin"])]})
    root.delete(f"uid=eve,{PEOPLE}")
    delta = delta_after(settings, snapshot.cursor)

    changed = {u.user_name: u for u in delta.users}
    assert set(changed) == {"gina", "bob"}
    assert changed["bob"].key == before["bob"] and changed["bob"].title == "Lead Admin"
    assert changed["gina"].manager_key == before["alice"]
    assert delta.removed_user_keys == [before["eve"]]
    assert before["alice"] not in delta.removed_user_keys


def test_people_leaving_the_filter_or_the_base_arrive_as_removals(fresh_slapd, settings_for, admin):
    """A leaver is not always deleted: an entry moved or scoped out of the searched content is reported deleted
    from it (RFC 4533), and the delta removes it like a delete."""
    settings = settings_for(fresh_slapd, users_filter="(&(objectClass=inetOrgPerson)(!(employeeType=leaver)))")
    snapshot = full(settings)
    before = keys(snapshot)
    root = admin(fresh_slapd)

    root.modify(f"uid=alice,{PEOPLE}", {"employeeType": [(ldap3.MODIFY_REPLACE, ["leaver"])]})
    root.modify_dn(f"uid=bob,{PEOPLE}", "uid=bob", new_superior=GROUPS)
    delta = delta_after(settings, snapshot.cursor)

    assert delta.users == []
    assert sorted(delta.removed_user_keys) == sorted([before["alice"], before["bob"]])


def test_the_next_delta_does_not_repeat_the_previous_one(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    first_cursor = full(settings).cursor
    add_person(admin(fresh_slapd), "hank")
    first = delta_after(settings, first_cursor)

    second = delta_after(settings, first.cursor)

    assert [u.user_name for u in first.users] == ["hank"]
    assert second.users == [] and second.removed_user_keys == []


def test_rename_keeps_the_key_and_later_group_changes_resolve_the_new_dn(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)
    before = keys(snapshot)
    root = admin(fresh_slapd)

    root.modify_dn(f"uid=bob,{PEOPLE}", "uid=robert")
    wait_for_member(root, f"cn=IT Admins,{GROUPS}", f"uid=robert,{PEOPLE}")
    renamed = delta_after(settings, snapshot.cursor)
    root.modify(f"cn=IT Admins,{GROUPS}", {"member": [(ldap3.MODIFY_ADD, [f"uid=dave,{PEOPLE}"])]})
    regrouped = delta_after(settings, renamed.cursor)

    assert [(u.key, u.user_name) for u in renamed.users] == [(before["bob"], "robert")]
    assert renamed.removed_user_keys == []
    assert [(g.display_name, g.member_keys) for g in regrouped.groups] == [
        ("IT Admins", {before["alice"], before["bob"], before["dave"]})
    ]
    it_admins = next(g for g in full(settings).groups if g.display_name == "IT Admins")
    assert it_admins.member_keys == {before["alice"], before["bob"], before["dave"]}


def test_membership_change_reports_the_group_with_its_whole_member_list(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)
    before = keys(snapshot)
    root = admin(fresh_slapd)

    root.modify(f"cn=IT Admins,{GROUPS}", {"member": [(ldap3.MODIFY_ADD, [f"uid=dave,{PEOPLE}"])]})
    root.modify(f"cn=IT Admins,{GROUPS}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=bob,{PEOPLE}"])]})
    root.modify(f"cn=posix-devs,{GROUPS}", {"memberUid": [(ldap3.MODIFY_ADD, ["eve"])]})
    delta = delta_after(settings, snapshot.cursor)

    groups = {g.display_name: g for g in delta.groups}
    assert set(groups) == {"IT Admins", "posix-devs"}
    assert groups["IT Admins"].member_keys == {before["alice"], before["dave"]}
    assert groups["posix-devs"].member_keys == {before["alice"], before["dave"], before["eve"]}
    assert delta.users == []


def test_members_with_escaped_or_multi_valued_rdns_resolve_in_a_delta(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)
    root = admin(fresh_slapd)
    escaped = f"cn=Doe\\, Jane,{PEOPLE}"
    multi = f"cn=Kim+uid=kim,{PEOPLE}"
    root.add(escaped, ["inetOrgPerson"], {"uid": "jdoe", "cn": "Doe, Jane", "sn": "Doe"})
    root.add(multi, ["inetOrgPerson"], {"uid": "kim", "cn": "Kim", "sn": "Kim"})

    root.modify(f"cn=IT Admins,{GROUPS}", {"member": [(ldap3.MODIFY_ADD, [escaped, multi])]})
    delta = delta_after(settings, snapshot.cursor)

    added = {u.user_name: u.key for u in delta.users}
    it_admins = next(g for g in delta.groups if g.display_name == "IT Admins")
    assert {added["jdoe"], added["kim"]} <= it_admins.member_keys
    assert "unresolved_members" not in it_admins.attributes


def test_deleted_group_and_nested_member_changes_are_reported(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)
    before = keys(snapshot)
    root = admin(fresh_slapd)

    root.delete(f"cn=Engineering,{GROUPS}")
    root.modify(f"cn=Parents,{GROUPS}", {"member": [(ldap3.MODIFY_DELETE, [f"cn=Children,{GROUPS}"])]})
    delta = delta_after(settings, snapshot.cursor)

    assert delta.removed_group_keys == [before["Engineering"]]
    assert before["Engineering"] not in {g.key for g in delta.groups}
    assert [(g.display_name, g.member_keys) for g in delta.groups] == [("Parents", {before["IT Admins"]})]


def test_user_becoming_locked_arrives_inactive(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd)
    snapshot = full(settings)

    admin(fresh_slapd).modify(
        f"uid=alice,{PEOPLE}", {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
    )
    delta = delta_after(settings, snapshot.cursor)

    assert [(u.user_name, u.active) for u in delta.users] == [("alice", False)]


def test_user_matching_disabled_filter_moves_between_partitions_without_a_removal(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd, disabled_filter="(employeeType=inactive)")
    snapshot = full(settings)

    admin(fresh_slapd).modify(f"uid=bob,{PEOPLE}", {"employeeType": [(ldap3.MODIFY_ADD, ["inactive"])]})
    admin(fresh_slapd).modify(f"uid=dave,{PEOPLE}", {"employeeType": [(ldap3.MODIFY_DELETE, ["inactive"])]})
    delta = delta_after(settings, snapshot.cursor)

    assert sorted((u.user_name, u.active) for u in delta.users) == [("bob", False), ("dave", True)]
    assert delta.removed_user_keys == []


def test_member_of_maintained_by_the_overlay_becomes_group_keys(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd, member_of=True)
    before = keys(full(settings))

    admin(fresh_slapd).modify(f"cn=IT Admins,{GROUPS}", {"member": [(ldap3.MODIFY_ADD, [f"uid=eve,{PEOPLE}"])]})
    after = full(settings)

    eve = next(u for u in after.users if u.user_name == "eve")
    assert eve.groups == (before["IT Admins"],)


def test_refused_cookie_falls_back_to_a_complete_snapshot(fresh_slapd, settings_for):
    settings = settings_for(fresh_slapd)
    cursor = json.loads(full(settings).cursor)
    stale = "cmlkPTAwMCxjc249MjAwMDAxMDEwMDAwMDAuMDAwMDAwWiMwMDAwMDAjMDAwIzAwMDAwMA=="  # csn of 2000-01-01
    cursor["position"] = {name: stale for name in cursor["position"]}

    result = Connector("hr-ldap", settings).read(json.dumps(cursor))

    assert isinstance(result, Snapshot) and result.complete
    assert {u.user_name for u in result.users} == {"alice", "bob", "carol", "dave", "eve"}


def users_refresh(settings, cursor: str) -> Refresh:
    """The refreshOnly search of the users (one partition) from a stored cursor, as the connector sends it."""
    (position,) = [value for name, value in json.loads(cursor)["position"].items() if name.startswith("users")]
    with Session("hr-ldap", settings, SYNCD_PASSWORD) as session:
        reader = DirectoryReader(session, flavor_named("openldap"), settings)
        base, search_filter, scope, attributes, _ = incremental._syncrepl_searches(reader)["users0"]
        return incremental.refresh_only(
            reader, "users", base, search_filter, scope, attributes, cursors.unpack(position)
        )


def test_deletes_beyond_the_session_log_force_a_complete_snapshot(tmp_path, settings_for, admin):
    server = start_directory(tmp_path / "short-log", sessionlog=2)
    try:
        settings = settings_for(server)
        snapshot = full(settings)
        root = admin(server)
        for uid in ("alice", "bob", "carol", "dave"):
            root.delete(f"uid={uid},{PEOPLE}")

        # slapd answers with a present phase (RFC 4533 §3.3.1): it names who is left, not who was deleted, so the
        # refresh is not trusted for deletions and the read is a complete snapshot instead.
        refresh = users_refresh(settings, snapshot.cursor)
        assert refresh.deletes_known is False and refresh.deleted == []
        result = Connector("hr-ldap", settings).read(snapshot.cursor)

        assert isinstance(result, Snapshot) and result.complete
        assert [u.user_name for u in result.users] == ["eve"]
    finally:
        server.stop()


def test_cursor_taken_under_other_settings_is_not_used(fresh_slapd, settings_for):
    cursor = full(settings_for(fresh_slapd)).cursor

    result = Connector("hr-ldap", settings_for(fresh_slapd, users_filter="(uid=a*)")).read(cursor)

    assert isinstance(result, Snapshot)
    assert [u.user_name for u in result.users] == ["alice"]


@pytest.mark.parametrize("cursor", ["not json", '{"v": 99}', '{"v": 1, "mode": "usn", "fp": "x", "position": {}}'])
def test_unreadable_cursor_gives_a_full_snapshot(slapd, settings_for, cursor):
    assert isinstance(Connector("hr-ldap", settings_for(slapd)).read(cursor), Snapshot)


def test_timestamp_watermark_mode_reports_changes_without_removals(fresh_slapd, settings_for, admin):
    settings = settings_for(fresh_slapd, incremental="timestamp")
    snapshot = full(settings)
    root = admin(fresh_slapd)

    add_person(root, "ivan")
    root.delete(f"uid=eve,{PEOPLE}")
    delta = delta_after(settings, snapshot.cursor)

    assert "ivan" in {u.user_name for u in delta.users}
    assert delta.removed_user_keys == []


def test_incremental_off_always_reads_fully(fresh_slapd, settings_for):
    settings = settings_for(fresh_slapd, incremental="off")
    snapshot = full(settings)

    assert snapshot.cursor is None
    assert isinstance(Connector("hr-ldap", settings).read(snapshot.cursor), Snapshot)
