"""What the Entra connector reads from Graph's delta queries: snapshots, deltas, merges, resets (against the fake)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from connectors.azure import Connector
from connectors.interface import Delta, Snapshot
from tests.fakes.graph import FakeGraph


def _snapshot(connector: Connector) -> Snapshot:
    result = connector.read(None)
    assert isinstance(result, Snapshot)
    return result


def _delta(connector: Connector, cursor: str | None) -> Delta:
    result = connector.read(cursor)
    assert isinstance(result, Delta), f"expected a delta, got {type(result).__name__}"
    return result


def test_first_read_is_a_complete_snapshot_of_users_and_groups(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada.lovelace", department="Engineering", jobTitle="Engineer", employeeId="E1")
    bob = graph.add_user(name="bob.builder")
    group = graph.add_group("Engineering", members=[ada, bob])

    snapshot = _snapshot(connector)

    assert snapshot.complete and snapshot.problems == []
    users = {u.key: u for u in snapshot.users}
    assert set(users) == {ada, bob}
    assert users[ada].user_name == "ada.lovelace@contoso.example"
    assert users[ada].email == "ada.lovelace@contoso.example"
    assert (users[ada].department, users[ada].title, users[ada].employee_number) == ("Engineering", "Engineer", "E1")
    assert users[ada].active is True
    assert [(g.key, g.display_name, g.member_keys) for g in snapshot.groups] == [
        (group, "Engineering", frozenset({ada, bob}))
    ]
    cursor = json.loads(snapshot.cursor or "")
    assert "$deltatoken=" in cursor["users"] and "$deltatoken=" in cursor["groups"]


def test_disabled_account_is_read_as_inactive(graph: FakeGraph, connector: Connector) -> None:
    graph.add_user(name="carol", accountEnabled=False)

    assert [u.active for u in _snapshot(connector).users] == [False]


def test_users_spanning_many_pages_are_all_read(graph: FakeGraph, connector: Connector) -> None:
    keys = {graph.add_user(name=f"user{i}") for i in range(230)}

    assert {u.key for u in _snapshot(connector).users} == keys
    assert len(graph.graph_requests("/v1.0/users/delta")) == 5  # 50 per page, as page_size asked


def test_incremental_read_returns_only_what_changed(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    graph.add_user(name="bob")
    group = graph.add_group("Engineering", members=[ada])
    cursor = _snapshot(connector).cursor
    carol = graph.add_user(name="carol")
    graph.update_user(ada, accountEnabled=False)
    graph.add_member(group, carol)
    graph.rename_group(group, "Platform")

    delta = _delta(connector, cursor)

    assert {u.key: u.active for u in delta.users} == {ada: False, carol: True}
    assert [(g.key, g.display_name, g.member_keys) for g in delta.groups] == [(group, "Platform", None)]
    assert delta.members_added == {group: {carol}}
    assert delta.members_removed == {}
    assert delta.removed_user_keys == [] and delta.removed_group_keys == []
    assert delta.cursor != cursor


def test_nothing_changed_gives_an_empty_delta(graph: FakeGraph, connector: Connector) -> None:
    graph.add_group("Engineering", members=[graph.add_user(name="ada")])
    cursor = _snapshot(connector).cursor

    delta = _delta(connector, cursor)

    assert (delta.users, delta.groups, delta.removed_user_keys, delta.members_added) == ([], [], [], {})


def test_soft_deleted_and_purged_users_are_both_removals(graph: FakeGraph, connector: Connector) -> None:
    soft, hard, stays = graph.add_user(name="soft"), graph.add_user(name="hard"), graph.add_user(name="stays")
    group = graph.add_group("Everyone", members=[soft, hard, stays])
    cursor = _snapshot(connector).cursor
    graph.delete_user(soft)
    graph.purge_user(hard)

    delta = _delta(connector, cursor)

    assert sorted(delta.removed_user_keys) == sorted([soft, hard])
    assert delta.users == []
    assert delta.members_removed == {group: {soft, hard}}


def test_restored_user_comes_back_as_an_upsert(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    cursor = _snapshot(connector).cursor
    graph.delete_user(ada)
    deleted = _delta(connector, cursor)
    graph.restore_user(ada)

    restored = _delta(connector, deleted.cursor)

    assert deleted.removed_user_keys == [ada]
    assert [u.key for u in restored.users] == [ada] and restored.removed_user_keys == []


def test_deleted_and_restored_within_one_round_is_an_upsert(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    cursor = _snapshot(connector).cursor
    graph.delete_user(ada)
    graph.restore_user(ada)

    delta = _delta(connector, cursor)

    assert [u.key for u in delta.users] == [ada] and delta.removed_user_keys == []


def test_deleted_group_is_a_removal(graph: FakeGraph, connector: Connector) -> None:
    group = graph.add_group("Temporary")
    cursor = _snapshot(connector).cursor
    graph.delete_group(group)

    assert _delta(connector, cursor).removed_group_keys == [group]


def test_large_group_split_across_pages_is_merged_into_one_complete_member_list(
    graph: FakeGraph, make_connector: Callable[..., Connector]
) -> None:
    graph.members_per_page = 1000
    members = [graph.add_user(name=f"member{i}", journal=False) for i in range(5000)]
    group = graph.add_group("Everyone", members=members, journal=False)

    snapshot = _snapshot(make_connector(page_size=999))

    pages = graph.graph_requests("/v1.0/groups/delta")
    assert len(pages) >= 5  # the group repeated on every page, 1,000 members at a time
    assert [(g.key, len(g.member_keys or ())) for g in snapshot.groups] == [(group, 5000)]
    assert snapshot.groups[0].member_keys == frozenset(members)


def test_membership_changes_split_across_pages_are_merged_in_a_delta(graph: FakeGraph, connector: Connector) -> None:
    graph.members_per_page = 100
    members = [graph.add_user(name=f"member{i}", journal=False) for i in range(400)]
    group = graph.add_group("Everyone", members=members[:200], journal=False)
    cursor = _snapshot(connector).cursor
    for key in members[200:]:
        graph.add_member(group, key)
    for key in members[:150]:
        graph.remove_member(group, key)

    delta = _delta(connector, cursor)

    assert delta.members_added == {group: set(members[200:])}
    assert delta.members_removed == {group: set(members[:150])}
    assert [g.key for g in delta.groups] == [group]


def test_nested_group_is_a_member_of_its_parent(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    child = graph.add_group("Platform", members=[ada])
    parent = graph.add_group("Engineering", members=[child])

    groups = {g.key: g.member_keys for g in _snapshot(connector).groups}

    assert groups == {child: frozenset({ada}), parent: frozenset({child})}


def test_same_object_twice_in_a_round_is_folded_into_one_change(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    group = graph.add_group("Engineering")
    cursor = _snapshot(connector).cursor
    graph.update_user(ada, jobTitle="CTO")
    graph.add_member(group, ada)
    graph.duplicate_changes = True

    delta = _delta(connector, cursor)

    assert [(u.key, u.title) for u in delta.users] == [(ada, "CTO")]
    assert [g.key for g in delta.groups] == [group]
    assert delta.members_added == {group: {ada}}


def test_replayed_changes_give_the_same_delta_again(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    group = graph.add_group("Engineering")
    cursor = _snapshot(connector).cursor
    graph.update_user(ada, jobTitle="CTO")
    graph.add_member(group, ada)
    first = _delta(connector, cursor)
    graph.replay_next = True

    replayed = _delta(connector, first.cursor)

    assert replayed.users == first.users
    assert replayed.members_added == first.members_added == {group: {ada}}


def test_synchronization_reset_gives_a_complete_snapshot(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    cursor = _snapshot(connector).cursor
    bob = graph.add_user(name="bob")
    graph.reset_delta_tokens("410")

    result = connector.read(cursor)

    assert isinstance(result, Snapshot) and result.complete
    assert {u.key for u in result.users} == {ada, bob}
    assert isinstance(connector.read(result.cursor), Delta)  # the new cursor works again


def test_expired_delta_token_gives_a_complete_snapshot(graph: FakeGraph, connector: Connector) -> None:
    ada = graph.add_user(name="ada")
    cursor = _snapshot(connector).cursor
    graph.reset_delta_tokens("syncStateNotFound")

    result = connector.read(cursor)

    assert isinstance(result, Snapshot) and result.complete and [u.key for u in result.users] == [ada]


def test_changed_selection_starts_with_a_full_read(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    graph.add_user(name="ada", officeLocation="Berlin")
    cursor = make_connector().read(None).cursor

    result = make_connector(select=("officeLocation",)).read(cursor)

    assert isinstance(result, Snapshot)
    assert [u.attributes.get("officeLocation") for u in result.users] == ["Berlin"]


def test_unreadable_cursor_starts_with_a_full_read(graph: FakeGraph, connector: Connector) -> None:
    graph.add_user(name="ada")

    assert isinstance(connector.read("not json"), Snapshot)


def test_every_next_link_is_followed_exactly_as_given(graph: FakeGraph, connector: Connector) -> None:
    for i in range(120):
        graph.add_user(name=f"user{i}")

    _snapshot(connector)

    requests = graph.graph_requests("/v1.0/users/delta")
    assert set(requests[0]["query"]) == {"$select"}
    assert "accountEnabled" in requests[0]["query"]["$select"].split(",")
    assert all(set(r["query"]) == {"$skiptoken"} for r in requests[1:])


def test_requests_ask_for_low_throttle_priority_and_a_page_size(graph: FakeGraph, connector: Connector) -> None:
    graph.add_user(name="ada")

    _snapshot(connector)

    for request in graph.graph_requests():
        assert request["headers"]["x-ms-throttle-priority"] == "low"
        assert request["headers"]["prefer"] == "odata.maxpagesize=50"
        assert request["headers"]["authorization"].startswith("Bearer ")


def test_group_ids_limit_the_read_to_those_groups(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    wanted = graph.add_group("Engineering")
    graph.add_group("Sales")

    snapshot = make_connector(group_ids=(wanted,)).read(None)

    assert [g.key for g in snapshot.groups] == [wanted]
    first = graph.graph_requests("/v1.0/groups/delta")[0]
    assert parse_qs(urlsplit("?" + "&".join(f"{k}={v}" for k, v in first["query"].items())).query)["$filter"] == [
        f"id eq '{wanted}'"
    ]


def test_groups_are_not_read_when_switched_off(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    graph.add_group("Engineering", members=[graph.add_user(name="ada")])
    connector = make_connector(read_groups=False)

    snapshot = connector.read(None)
    delta = connector.read(snapshot.cursor)

    assert snapshot.groups == [] and isinstance(delta, Delta)
    assert graph.graph_requests("/v1.0/groups/") == []


def test_a_token_is_reused_across_pages_and_reads(graph: FakeGraph, connector: Connector) -> None:
    for i in range(120):
        graph.add_user(name=f"user{i}")

    connector.read(connector.read(None).cursor)

    assert graph.token_requests == 1


def test_extra_selected_attributes_are_kept_as_attributes(
    graph: FakeGraph, make_connector: Callable[..., Connector]
) -> None:
    graph.add_user(name="ada", officeLocation="Berlin", usageLocation="DE")

    snapshot = make_connector(select=("officeLocation", "usageLocation")).read(None)

    assert snapshot.users[0].attributes == {"officeLocation": "Berlin", "usageLocation": "DE"}


def test_guest_accounts_carry_their_user_type(graph: FakeGraph, connector: Connector) -> None:
    graph.add_user(name="guest", userType="Guest", userPrincipalName="guest_fabrikam.example#EXT#@contoso.example")
    graph.add_user(name="ada", userType="Member")

    users = {u.user_name: u.attributes for u in _snapshot(connector).users}

    assert users == {
        "guest_fabrikam.example#EXT#@contoso.example": {"userType": "Guest"},
        "ada@contoso.example": {"userType": "Member"},
    }


def test_manager_is_read_from_manager_delta_in_full_and_incremental_rounds(
    graph: FakeGraph, connector: Connector
) -> None:
    boss, report = graph.add_user(name="boss"), graph.add_user(name="report")
    graph.set_manager(report, boss)
    snapshot = _snapshot(connector)
    assert {u.key: u.manager_key for u in snapshot.users} == {boss: None, report: boss}
    request = graph.graph_requests("/v1.0/users/delta")[0]
    assert "manager" in request["query"]["$select"].split(",") and "$expand" not in request["query"]
    graph.set_manager(report, None)
    removed = _delta(connector, snapshot.cursor)
    assert [(u.key, u.manager_key) for u in removed.users] == [(report, None)]
    assert "manager" not in removed.users[0].attributes
