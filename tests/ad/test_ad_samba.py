"""The AD flavour against a real Samba AD DC (tests/ad/samba.py): LDAPS with the DC's CA as ``ca_file``, paged
reads, objectGUID keys, the userAccountControl disabled bit, employeeID, nested and large groups, what each account
can see, and the USN and DirSync increments with deletions, moves out of scope, disables and member changes."""

from __future__ import annotations

import logging
import uuid

import ldap3
from ldap3.protocol.microsoft import extended_dn_control

from connectors.interface import Delta, Snapshot
from connectors.ldap import Connector, leavers
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.session import Session
from connectors.ldap.vendor import ad
from tests.ad.samba import (
    ADMIN,
    DOMAIN_DN,
    LEAVERS,
    REPLICATOR,
    STAFF,
    disabled_at_load,
    employee_number,
    group_dn,
    user_dn,
)


def full_read(dc, ad_settings, **overrides) -> Snapshot:
    result = Connector("corp-ad", ad_settings(dc, **overrides)).read(None)
    assert isinstance(result, Snapshot)
    return result


def admin_settings(dc, ad_settings, tmp_path, **overrides):
    secret = tmp_path / "admin.secret"
    secret.write_text("Passw0rd!Judge\n", encoding="utf-8")
    return ad_settings(dc, bind_dn=ADMIN, bind_password_file=str(secret), **overrides)


def test_a_full_read_over_ldaps_maps_the_whole_domain(samba_dc, ad_settings):
    snapshot = full_read(samba_dc, ad_settings)

    users = {user.user_name: user for user in snapshot.users}
    groups = {group.display_name: group for group in snapshot.groups}
    keys = {user.attributes["dn"]: user.key for user in snapshot.users}
    keys.update({group.attributes["dn"]: group.key for group in snapshot.groups})
    assert snapshot.complete, snapshot.problems
    assert len(users) == samba_dc.plan.users  # paged in pages of 500; the tombstone "Gone Before" is not read
    assert all(str(uuid.UUID(user.key)) == user.key for user in snapshot.users)
    assert [n for n in range(samba_dc.plan.users) if not users[f"u{n:05d}"].active] == [
        n for n in range(samba_dc.plan.users) if disabled_at_load(n)
    ]
    assert users["u00001"].employee_number == employee_number(1) == "E00001"
    assert users["u00007"].employee_number == employee_number(7) == "N00007"  # employeeNumber where no employeeID
    for name, member_dns in samba_dc.plan.groups.items():
        assert groups[name].member_keys == {keys[dn] for dn in member_dns}, name
    assert len(groups["Big"].member_keys) == 1700
    assert groups["Everyone"].member_keys == {groups["Division A"].key, groups["Division B"].key}


def test_object_guids_are_the_keys_windows_tools_show(samba_dc, ad_settings):
    """The key is objectGUID in its canonical text ([MS-DTYP] §2.3.4.2), as the DC itself renders it in a
    ``<GUID=...>`` extended DN; a second read gives the same keys."""
    first = {user.user_name: user.key for user in full_read(samba_dc, ad_settings).users}
    again = {user.user_name: user.key for user in full_read(samba_dc, ad_settings).users}
    admin = samba_dc.admin()
    admin.search(
        user_dn(42),
        "(objectClass=*)",
        ldap3.BASE,
        attributes=["1.1"],
        controls=[extended_dn_control(hex_format=False)],  # flag 1: GUID as text
    )
    extended = admin.response[0]["dn"]
    assert first == again
    assert extended.lower().startswith(f"<guid={first['u00042']}>")


def test_samba_returns_every_member_at_once_so_ranged_retrieval_is_left_to_recorded_answers(samba_dc, ad_settings):
    """Samba 4.17 has no MaxValRange: all 1,700 values come in one ``member`` attribute. The ``member;range=``
    path (vendor/ad.collect_ranged) is syncd's only one (ldap3's auto_range is off) and is tested on recorded AD
    answers in tests/ldap/test_ldap_active_directory.py."""
    settings = ad_settings(samba_dc)
    with Session("corp-ad", settings, samba_dc.reader_password_file.read_text().strip()) as session:
        assert session.connection is not None and session.connection.auto_range is False
        found = session.search("big", group_dn("Big"), "(objectClass=*)", "base", ["member"])
    names = list(found[0]["attributes"])
    assert names == ["member"] and len(found[0]["attributes"]["member"]) == 1700


def test_samba_answers_the_in_chain_rule_with_what_syncd_flattens(samba_dc, ad_settings):
    """syncd reads direct members and flattens nesting itself (it works the same on every flavour); AD's in-chain
    matching rule (1.2.840.113556.1.4.1941) on the DC gives the same people for a two-level nested group."""
    snapshot = full_read(samba_dc, ad_settings)
    by_key = {group.key: group for group in snapshot.groups}
    names = {group.display_name: group for group in snapshot.groups}

    def flattened(key: str) -> set[str]:
        group = by_key.get(key)
        if group is None:
            return {key}
        return set().union(*(flattened(member) for member in group.member_keys or ()))

    admin = samba_dc.admin()
    admin.search(
        STAFF,
        f"(memberOf:1.2.840.113556.1.4.1941:={group_dn('Everyone')})",
        attributes=["objectGUID"],
        paged_size=1000,
    )
    entries = list(admin.response)
    cookie = admin.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
    while cookie:
        admin.search(
            STAFF,
            f"(memberOf:1.2.840.113556.1.4.1941:={group_dn('Everyone')})",
            attributes=["objectGUID"],
            paged_size=1000,
            paged_cookie=cookie,
        )
        entries.extend(admin.response)
        cookie = admin.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
    in_chain = {ad.guid_text(e["raw_attributes"]["objectGUID"]) for e in entries if e["type"] == "searchResEntry"}
    assert in_chain == flattened(names["Everyone"].key)
    assert len(in_chain) == samba_dc.plan.users


def test_each_account_is_told_what_it_can_see(samba_dc, ad_settings, tmp_path):
    """A plain user sees no tombstone and may not DirSync; the one granted "Replicating Directory Changes" may
    DirSync but (on Samba) still sees no tombstone; the domain Administrator sees both."""

    def seen(settings) -> leavers.Visibility:
        with Session("corp-ad", settings, (tmp_path / "pw").read_text().strip()) as session:
            return leavers.probe(DirectoryReader(session, ad.FLAVOR, settings))

    (tmp_path / "pw").write_text("Reader!Pass123\n", encoding="utf-8")
    reader = seen(ad_settings(samba_dc))
    replicator = seen(ad_settings(samba_dc, bind_dn=REPLICATOR))
    (tmp_path / "pw").write_text("Passw0rd!Judge\n", encoding="utf-8")
    admin = seen(ad_settings(samba_dc, bind_dn=ADMIN))
    snapshot = full_read(samba_dc, ad_settings)

    assert reader == leavers.Visibility(deletions=False, dirsync=False)
    assert replicator == leavers.Visibility(deletions=False, dirsync=True)
    assert admin == leavers.Visibility(deletions=True, dirsync=True)
    assert "deletions visible: no (no tombstone under CN=Deleted Objects is readable by bind_dn)" in snapshot.notes
    assert "incremental usn: leavers found by an objectGUID census of the scope every increment" in snapshot.notes


def _change(dc) -> None:
    """One of each: a delete, a move out of the scope, a disable, a rename, and a member moved between groups."""
    admin = dc.admin()
    admin.delete(user_dn(1))
    admin.modify_dn(user_dn(2), "CN=User 00002", new_superior=LEAVERS)
    admin.modify(user_dn(3), {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})
    admin.modify(user_dn(4), {"displayName": [(ldap3.MODIFY_REPLACE, ["Renamed Four"])]})
    admin.modify(group_dn("Dept 05"), {"member": [(ldap3.MODIFY_DELETE, [user_dn(5)])]})
    admin.modify(group_dn("Dept 06"), {"member": [(ldap3.MODIFY_ADD, [user_dn(5)])]})


def _keys(snapshot: Snapshot) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {user.user_name: user.key for user in snapshot.users},
        {group.display_name: group.key for group in snapshot.groups},
    )


def test_usn_increment_as_administrator_reads_tombstones_and_moves_out(fresh_samba, ad_settings, tmp_path):
    settings = admin_settings(fresh_samba, ad_settings, tmp_path, incremental="usn")
    first = Connector("corp-ad", settings).read(None)
    users, groups = _keys(first)
    _change(fresh_samba)

    delta = Connector("corp-ad", settings).read(first.cursor)

    assert isinstance(delta, Delta)
    assert delta.present_user_keys is None and delta.blind_to_deletions is None  # tombstones are visible
    assert {users["u00001"], users["u00002"]} <= set(delta.removed_user_keys)
    changed = {user.user_name: user for user in delta.users}
    assert not changed["u00003"].active and changed["u00004"].display_name == "Renamed Four"
    by_name = {group.display_name: group for group in delta.groups}
    assert users["u00005"] not in by_name["Dept 05"].member_keys and users["u00005"] in by_name["Dept 06"].member_keys
    assert groups["Dept 05"] in {g.key for g in delta.groups}


def test_usn_increment_as_a_plain_user_finds_leavers_by_census(fresh_samba, ad_settings):
    settings = ad_settings(fresh_samba, incremental="usn")
    first = Connector("corp-ad", settings).read(None)
    users, _ = _keys(first)
    _change(fresh_samba)

    delta = Connector("corp-ad", settings).read(first.cursor)

    assert isinstance(delta, Delta)
    assert users["u00002"] in delta.removed_user_keys  # moved out: seen by its DN in the domain-wide change search
    assert delta.present_user_keys is not None
    assert users["u00001"] not in delta.present_user_keys and users["u00002"] not in delta.present_user_keys
    assert len(delta.present_user_keys) == fresh_samba.plan.users - 2
    assert delta.blind_to_deletions is None


def test_increments_between_censuses_say_they_cannot_see_leavers(fresh_samba, ad_settings):
    settings = ad_settings(fresh_samba, incremental="usn", leaver_check_every=3)
    cursor = Connector("corp-ad", settings).read(None).cursor
    seen = []
    for _ in range(3):
        delta = Connector("corp-ad", settings).read(cursor)
        assert isinstance(delta, Delta)
        seen.append((delta.blind_to_deletions is not None, delta.present_user_keys is not None))
        cursor = delta.cursor

    assert seen == [(True, False), (True, False), (False, True)]


def test_dirsync_increment_reads_changes_and_linked_member_deltas(fresh_samba, ad_settings):
    settings = ad_settings(fresh_samba, bind_dn=REPLICATOR)
    first = Connector("corp-ad", settings).read(None)
    users, groups = _keys(first)
    _change(fresh_samba)

    delta = Connector("corp-ad", settings).read(first.cursor)

    assert isinstance(delta, Delta)
    assert '"mode": "dirsync"' in (first.cursor or "")
    assert users["u00002"] in delta.removed_user_keys  # moved to OU=Leavers: name and parentGUID changed
    changed = {user.user_name: user for user in delta.users}
    assert set(changed) == {"u00003", "u00004"}
    assert not changed["u00003"].active and changed["u00004"].display_name == "Renamed Four"
    assert delta.members_removed == {groups["Dept 05"]: {users["u00005"]}}
    assert delta.members_added == {groups["Dept 06"]: {users["u00005"]}}
    # Samba's DirSync hides the tombstone from a non-admin account holding the right: the census finds it.
    assert users["u00001"] not in delta.removed_user_keys
    assert delta.present_user_keys is not None and users["u00001"] not in delta.present_user_keys


def test_a_refused_dirsync_cookie_falls_back_to_a_full_read(samba_dc, ad_settings, caplog):
    settings = ad_settings(samba_dc, bind_dn=REPLICATOR)
    first = Connector("corp-ad", settings).read(None)
    assert first.cursor is not None
    broken = first.cursor.replace('"cookie": "', '"cookie": "AAAA', 1)

    with caplog.at_level(logging.WARNING, logger="connectors.ldap.dirsync"):
        again = Connector("corp-ad", settings).read(broken)

    assert isinstance(again, Snapshot) and again.complete
    assert len(again.users) == samba_dc.plan.users
    assert any("DirSync cookie refused" in record.getMessage() for record in caplog.records)


def test_dirsync_demanded_without_the_right_is_one_clear_error(samba_dc, ad_settings):
    import pytest

    from syncd.common.errors import ConnectorError

    with pytest.raises(ConnectorError) as failure:
        Connector("corp-ad", ad_settings(samba_dc, incremental="dirsync")).read(None)

    assert "Replicating Directory Changes" in str(failure.value) and "\n" not in str(failure.value)


def test_the_domain_root_is_not_a_problem(samba_dc, ad_settings):
    """Reading from the domain root meets Samba's partition references (DomainDnsZones and the like), which are
    not part of the read."""
    snapshot = full_read(samba_dc, ad_settings, users_base=DOMAIN_DN, groups_base=DOMAIN_DN)
    assert snapshot.complete, snapshot.problems
    assert len(snapshot.users) >= samba_dc.plan.users
