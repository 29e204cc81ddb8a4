"""Full reads against the fake org: every user of every status, Link paging only, the groups the source selects."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.interface import ReadResult, Snapshot
from connectors.okta import Connector, Settings
from connectors.okta.cursor import decode
from connectors.okta.records import ACTIVE_STATUSES, ALL_STATUSES
from tests.fakes.okta import FakeOkta


def snapshot_of(result: ReadResult) -> Snapshot:
    assert isinstance(result, Snapshot)
    return result


def test_snapshot_reads_ten_thousand_users_over_many_pages(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    ids = [fake.add_user(f"user{i:05d}.test@acme.com") for i in range(10_000)]
    everyone = fake.add_group("Everyone", type="BUILT_IN")
    fake.add_members(everyone, ids, log=False)
    engineering = fake.add_group("Engineering")
    fake.add_members(engineering, ids[::7], log=False)

    snapshot = snapshot_of(read(None))

    assert snapshot.complete
    assert [u.key for u in snapshot.users] == ids
    members = {g.display_name: g.member_keys for g in snapshot.groups}
    assert members == {"Everyone": frozenset(ids), "Engineering": frozenset(ids[::7])}
    assert fake.count("/api/v1/users") == 10_000 // 200
    assert fake.count(f"/api/v1/groups/{everyone}/users") == 10_000 // 1000


def test_every_page_after_the_first_comes_from_a_next_link(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    ids = [fake.add_user(f"u{i}.x@acme.com") for i in range(1_050)]
    group = fake.add_group("Staff")
    fake.add_members(group, ids, log=False)

    snapshot_of(read(None))

    afters = [s.query["after"] for s in fake.seen if "after" in s.query]
    assert len(afters) == 5 + 1  # users pages 2..6, members page 2
    assert set(afters) <= fake.issued_cursors


@pytest.mark.parametrize(
    ("status", "active"),
    [
        ("ACTIVE", True),
        ("PROVISIONED", True),
        ("RECOVERY", True),
        ("PASSWORD_EXPIRED", True),
        ("LOCKED_OUT", True),
        ("STAGED", False),
        ("SUSPENDED", False),
        ("DEPROVISIONED", False),
    ],
)
def test_each_okta_status_maps_to_the_documented_activity(
    fake: FakeOkta, read: Callable[..., ReadResult], status: str, active: bool
) -> None:
    fake.add_user("someone.x@acme.com", status=status)

    (user,) = snapshot_of(read(None)).users

    assert user.active is active
    assert user.attributes["okta_status"] == status


def test_deprovisioned_users_are_read_although_okta_hides_them_by_default(
    fake: FakeOkta, read: Callable[..., ReadResult]
) -> None:
    kept = fake.add_user("kept.x@acme.com")
    gone = fake.add_user("gone.x@acme.com", status="DEPROVISIONED")

    snapshot = snapshot_of(read(None))

    assert {u.key: u.active for u in snapshot.users} == {kept: True, gone: False}


def test_user_profile_becomes_the_record_attributes(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    manager = fake.add_user("boss.x@acme.com")
    uid = fake.add_user(
        "ada.lovelace@acme.com",
        firstName="Ada",
        lastName="Lovelace",
        displayName="Ada L.",
        department="R&D",
        title="Engineer",
        employeeNumber="1815",
        managerId=manager,
    )

    user = next(u for u in snapshot_of(read(None)).users if u.key == uid)

    assert (user.user_name, user.email, user.external_id) == ("ada.lovelace@acme.com", "ada.lovelace@acme.com", uid)
    assert (user.display_name, user.given_name, user.family_name) == ("Ada L.", "Ada", "Lovelace")
    assert (user.department, user.title, user.employee_number, user.manager_key) == ("R&D", "Engineer", "1815", manager)


def test_groups_are_selected_by_type_and_by_name_glob(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    fake.add_group("Everyone", type="BUILT_IN")
    fake.add_group("Eng Platform")
    fake.add_group("eng-mobile")
    fake.add_group("Sales")
    fake.add_group("Eng AD mirror", type="APP_GROUP")

    def names(**selection: object) -> set[str]:
        return {g.display_name for g in snapshot_of(read(None, **selection)).groups}

    assert names() == {"Everyone", "Eng Platform", "eng-mobile", "Sales", "Eng AD mirror"}
    assert names(group_types=("OKTA_GROUP",)) == {"Eng Platform", "eng-mobile", "Sales"}
    assert names(group_names=("eng*",)) == {"Eng Platform", "eng-mobile", "Eng AD mirror"}
    assert names(group_types=("OKTA_GROUP",), group_names=("Eng*", "Sales")) == {"Eng Platform", "eng-mobile", "Sales"}


def test_members_of_unselected_groups_are_not_read(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    fake.add_group("Sales")
    wanted = fake.add_group("Engineering")

    snapshot_of(read(None, group_names=("Engineering",)))

    member_reads = {s.path for s in fake.seen if s.path.endswith("/users") and s.path.startswith("/api/v1/groups/")}
    assert member_reads == {f"/api/v1/groups/{wanted}/users"}


def test_group_deleted_between_listing_and_members_is_left_out(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    kept = fake.add_group("Kept")
    vanished = fake.add_group("Vanished")
    fake.fail(f"/api/v1/groups/{vanished}/users", status=404)

    snapshot = snapshot_of(read(None))

    assert snapshot.complete
    assert [g.key for g in snapshot.groups] == [kept]


def test_snapshot_cursor_is_the_server_time_of_the_read(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    fake.advance(86_400 * 3)
    fake.add_user("someone.x@acme.com")

    snapshot = snapshot_of(read(None))

    assert snapshot.cursor is not None
    mark = decode(snapshot.cursor)
    assert mark is not None
    assert abs((fake.now() - mark.since).total_seconds()) < 600  # Okta's clock (3 days ahead of ours), not ours


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    statuses=st.lists(st.sampled_from(ALL_STATUSES), max_size=420),
    page_size=st.integers(min_value=1, max_value=200),
    member_page_size=st.integers(min_value=1, max_value=1000),
)
def test_any_directory_is_read_whole_and_once_at_any_page_size(
    statuses: list[str], page_size: int, member_page_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOkta() as fake:
        monkeypatch.setenv("SYNCD_TEST_OKTA_TOKEN", fake.api_token)
        ids = [fake.add_user(f"u{i}.x@acme.com", status=status) for i, status in enumerate(statuses)]
        group = fake.add_group("All")
        fake.add_members(group, ids[::2], log=False)
        connector = Connector(
            "okta-test",
            Settings(
                url=fake.url,
                token_env="SYNCD_TEST_OKTA_TOKEN",
                page_size=page_size,
                member_page_size=member_page_size,
            ),
        )

        snapshot = snapshot_of(connector.read(None))

    assert [u.key for u in snapshot.users] == ids
    assert [u.active for u in snapshot.users] == [s in ACTIVE_STATUSES for s in statuses]
    assert snapshot.groups[0].member_keys == frozenset(ids[::2])
