"""Incremental reads: only what changed since the watermark (with an overlap), and only explicit removals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors.interface import Delta, ReadResult, Snapshot
from tests.fakes.okta import FakeOkta

HOUR = 3600.0


@pytest.fixture
def org(fake: FakeOkta) -> dict[str, str]:
    """Four users and two groups, created an hour before the first read."""
    ids = {name: fake.add_user(f"{name}.x@acme.com") for name in ("ada", "bob", "cy", "dee")}
    ids["eng"] = fake.add_group("Engineering")
    ids["admins"] = fake.add_group("IT Admins")
    fake.add_members(ids["eng"], [ids["ada"], ids["bob"], ids["cy"]])
    fake.add_members(ids["admins"], [ids["ada"]])
    fake.advance(HOUR)
    return ids


def first_cursor(read: Callable[..., ReadResult], fake: FakeOkta, **settings: object) -> str:
    snapshot = read(None, **settings)
    assert isinstance(snapshot, Snapshot) and snapshot.cursor
    fake.advance(HOUR)
    return snapshot.cursor


def delta_of(result: ReadResult) -> Delta:
    assert isinstance(result, Delta)
    return result


def test_delta_carries_only_the_users_and_groups_that_changed(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake)
    fake.update_user(org["bob"], status="DEPROVISIONED")
    new = fake.add_user("eve.x@acme.com")
    fake.add_members(org["eng"], [new])

    delta = delta_of(read(cursor))

    assert {u.key: u.active for u in delta.users} == {org["bob"]: False, new: True}
    assert [(g.key, g.member_keys) for g in delta.groups] == [
        (org["eng"], frozenset({org["ada"], org["bob"], org["cy"], new}))
    ]
    assert delta.removed_user_keys == [] and delta.removed_group_keys == []


def test_nothing_changed_gives_an_empty_delta_and_a_newer_cursor(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake)

    delta = delta_of(read(cursor))

    assert (delta.users, delta.groups, delta.members_added, delta.members_removed) == ([], [], {}, {})
    assert delta.cursor and delta.cursor > cursor


def test_a_change_stamped_just_before_the_watermark_is_caught_by_the_overlap(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake)
    fake.advance(-HOUR - 30)  # a write Okta made visible only after our read: stamped 30 s before the watermark
    fake.update_user(org["cy"], title="CTO")
    fake.advance(HOUR + 30)

    assert [u.title for u in delta_of(read(cursor)).users] == ["CTO"]
    assert delta_of(read(cursor, overlap_seconds=0)).users == []


def test_without_the_system_log_a_removed_member_shows_as_the_groups_full_new_member_list(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake)
    fake.remove_member(org["eng"], org["cy"])

    delta = delta_of(read(cursor))

    assert [g.member_keys for g in delta.groups] == [frozenset({org["ada"], org["bob"]})]
    assert delta.members_removed == {}


def test_with_the_system_log_membership_changes_and_deletions_are_explicit(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake, system_log=True)
    fake.remove_member(org["eng"], org["cy"])
    fake.add_members(org["admins"], [org["bob"]])
    fake.update_user(org["dee"], status="DEPROVISIONED")
    fake.delete_user(org["dee"])
    fake.delete_group(org["admins"])
    member_reads_before = fake.count("/api/v1/groups/")

    delta = delta_of(read(cursor, system_log=True))

    assert delta.members_removed == {org["eng"]: {org["cy"]}}
    assert delta.removed_user_keys == [org["dee"]]
    assert delta.removed_group_keys == [org["admins"]]
    assert org["dee"] not in {u.key for u in delta.users}
    assert delta.members_added == {}  # bob joined a group that is gone
    assert fake.count("/api/v1/groups/") == member_reads_before  # no group was re-read member by member


def test_system_log_polling_resumes_from_the_last_next_link(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake, system_log=True)
    fake.remove_member(org["eng"], org["cy"])
    second = delta_of(read(cursor, system_log=True))
    fake.advance(HOUR)
    fake.add_members(org["eng"], [org["dee"]])
    log_reads = [s for s in fake.seen if s.path == "/api/v1/logs"]

    third = delta_of(read(second.cursor, system_log=True))

    resumed = [s for s in fake.seen if s.path == "/api/v1/logs"][len(log_reads) :]
    assert all("after" in s.query and s.query["after"] in fake.issued_cursors for s in resumed)
    assert third.members_added == {org["eng"]: {org["dee"]}}
    assert third.members_removed == {}  # the earlier removal is not replayed


def test_the_last_membership_event_of_a_pair_wins(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake, system_log=True)
    fake.remove_member(org["eng"], org["bob"])
    fake.add_members(org["eng"], [org["bob"]])

    delta = delta_of(read(cursor, system_log=True))

    assert delta.members_added == {org["eng"]: {org["bob"]}} and delta.members_removed == {}


def test_a_group_renamed_out_of_the_name_globs_leaves_the_scope_explicitly(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    cursor = first_cursor(read, fake, group_names=("Eng*", "IT *"))
    fake.rename_group(org["admins"], "Former IT Admins")

    delta = delta_of(read(cursor, group_names=("Eng*", "IT *")))

    assert delta.removed_group_keys == [org["admins"]]
    assert delta.groups == []


def test_a_cursor_this_connector_did_not_write_gives_a_full_snapshot(
    read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    result = read('{"deltaLink": "https://graph.microsoft.com/..."}')

    assert isinstance(result, Snapshot) and result.complete and len(result.users) == 4


def test_a_failing_delta_raises_instead_of_returning_part_of_the_changes(
    fake: FakeOkta, read: Callable[..., ReadResult], org: dict[str, str]
) -> None:
    from syncd.common.errors import ConnectorError

    cursor = first_cursor(read, fake)
    fake.fail("/api/v1/groups", status=502, times=100)

    with pytest.raises(ConnectorError, match="changed groups"):
        read(cursor, max_retries=1)
