"""Full reads of a real 389 Directory Server: flavour detection, nsUniqueId keys, nsAccountLock as disabled, nested
groups (member lists and the memberOf plugin), and a FreeIPA-shaped tree read with the FreeIPA mapping."""

from __future__ import annotations

from connectors.interface import Snapshot
from connectors.ldap import Connector
from connectors.ldap.session import Session
from tests.ds389.directory import GROUPS, IPA_GROUPS, IPA_USERS, PEOPLE, SYNCD_PASSWORD


def _snapshot(settings) -> Snapshot:
    result = Connector("ds", settings).read(None)
    assert isinstance(result, Snapshot)
    assert result.complete, result.problems
    return result


def test_flavour_is_detected_from_the_real_rootdse(ds_settings):
    plain = ds_settings(users_base=PEOPLE, groups_base=GROUPS)
    ipa = ds_settings(users_base=IPA_USERS, groups_base=IPA_GROUPS)
    with Session("ds", plain, SYNCD_PASSWORD) as session:
        assert Connector("ds", plain).flavor(session).name == "389ds"
    with Session("ds", ipa, SYNCD_PASSWORD) as session:
        assert Connector("ds", ipa).flavor(session).name == "freeipa"


def test_full_read_keys_people_by_nsuniqueid_and_locked_accounts_are_inactive(ds389, ds_settings, ds_admin):
    _, layout, _ = ds389
    snapshot = _snapshot(ds_settings(users_base=PEOPLE, groups_base=GROUPS))

    ds_admin.search(PEOPLE, "(uid=*)", attributes=["uid", "nsUniqueId"])
    unique_ids = {str(entry.uid): str(entry.nsUniqueId) for entry in ds_admin.entries}
    by_name = {user.user_name: user for user in snapshot.users}
    assert set(by_name) == set(layout.people)
    assert {name: user.key for name, user in by_name.items()} == unique_ids
    assert {name for name, user in by_name.items() if not user.active} == layout.locked
    assert by_name["user0001"].department == "Support" and by_name["user0001"].employee_number == "1001"


def test_nested_groups_come_as_member_groups_and_memberof_is_transitive(ds389, ds_settings):
    _, layout, _ = ds389
    snapshot = _snapshot(ds_settings(users_base=PEOPLE, groups_base=GROUPS, member_of=True))
    names = {user.key: user.user_name for user in snapshot.users}
    groups = {group.display_name: group for group in snapshot.groups}
    group_names = {group.key: group.display_name for group in snapshot.groups}

    for name, group in groups.items():
        people = {names[key] for key in group.member_keys if key in names}
        children = {group_names[key] for key in group.member_keys if key in group_names}
        assert people == layout.members.get(name, set()), name
        assert children == layout.children.get(name, set()), name
    # The memberOf plugin names every group a person is in, nested ones included.
    for user in snapshot.users:
        expected = {name for name in layout.members if user.user_name in layout.everyone_in(name)}
        assert {group_names[key] for key in user.groups} == expected, user.user_name


def test_a_freeipa_tree_is_read_with_the_freeipa_mapping(ds389, ds_settings, ds_admin):
    _, _, layout = ds389
    snapshot = _snapshot(ds_settings(users_base=IPA_USERS, groups_base=IPA_GROUPS))

    ds_admin.search(IPA_USERS, "(uid=*)", attributes=["uid", "ipaUniqueID"])
    ipa_ids = {str(entry.uid): str(entry.ipaUniqueID) for entry in ds_admin.entries}
    by_name = {user.user_name: user for user in snapshot.users}
    assert {name: user.key for name, user in by_name.items()} == ipa_ids
    assert {name for name, user in by_name.items() if not user.active} == layout.locked
    assert by_name["ipa000"].department == "Research"
    groups = {group.display_name: group for group in snapshot.groups}
    group_names = {group.key: group.display_name for group in snapshot.groups}
    names = {user.key: user.user_name for user in snapshot.users}
    for name, group in groups.items():
        assert {names[k] for k in group.member_keys if k in names} == layout.members[name], name
        assert {group_names[k] for k in group.member_keys if k in group_names} == layout.children.get(name, set())
