"""Failures: each ends in a retry that succeeds or in one clear line naming the source and the fix — never a token,
never a snapshot that looks complete."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from connectors.interface import ReadResult, Snapshot
from syncd.common.errors import ConnectorError
from tests.fakes.okta import FakeOkta


@pytest.fixture
def directory(fake: FakeOkta) -> list[str]:
    """1,000 users (5 pages) in one group."""
    ids = [fake.add_user(f"u{i:04d}.x@acme.com") for i in range(1_000)]
    fake.add_members(fake.add_group("Staff"), ids, log=False)
    return ids


def failure(read: Callable[..., ReadResult], **overrides: object) -> str:
    with pytest.raises(ConnectorError) as caught:
        read(None, **overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("source okta-test: ")
    return message


def test_rejected_api_token_fails_with_one_line_that_never_shows_the_token(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_OKTA_TOKEN", "00wrong-token-value-that-must-not-leak")

    message = failure(read, token_env="WRONG_OKTA_TOKEN")

    assert "401" in message and "E0000011" in message
    assert "token_file/token_env" in message
    assert "00wrong-token-value-that-must-not-leak" not in message
    assert fake.api_token not in message


def test_token_without_group_permission_fails_with_403_and_the_fix(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]
) -> None:
    fake.api_token_scopes = frozenset({"okta.users.read"})

    message = failure(read)

    assert "403" in message and "E0000006" in message
    assert "Read-only Administrator" in message
    assert fake.api_token not in message


def test_server_errors_are_retried_with_a_smaller_page(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]
) -> None:
    fake.fail("/api/v1/users", status=503, skip=1, times=2)

    snapshot = read(None)

    assert isinstance(snapshot, Snapshot) and snapshot.complete
    assert [u.key for u in snapshot.users] == directory
    limits = [s.query["limit"] for s in fake.seen if s.path == "/api/v1/users"]
    assert limits[:5] == ["200", "200", "100", "50", "200"]


def test_a_page_failing_halfway_stops_the_read_without_a_snapshot(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]
) -> None:
    fake.fail("/api/v1/users", status=500, skip=3, times=100)

    message = failure(read, max_retries=2)

    assert "users (page 4)" in message
    assert "HTTP 500" in message and "nothing was applied" in message


def test_a_malformed_page_is_retried(fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]) -> None:
    fake.inject("/api/v1/users", "malformed", skip=2)

    snapshot = read(None)

    assert isinstance(snapshot, Snapshot) and len(snapshot.users) == 1_000


def test_malformed_pages_that_persist_fail_clearly(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]
) -> None:
    fake.inject("/api/v1/groups", "malformed", times=100)

    message = failure(read, max_retries=1)

    assert "groups (page 1)" in message and "not valid JSON" in message


def test_a_truncated_page_is_retried(fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]) -> None:
    fake.inject("/api/v1/groups/", "truncate")

    snapshot = read(None)

    assert isinstance(snapshot, Snapshot) and snapshot.groups[0].member_keys == frozenset(directory)


def test_truncated_pages_that_persist_fail_clearly(
    fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]
) -> None:
    fake.inject("/api/v1/users", "truncate", skip=1, times=100)

    message = failure(read, max_retries=1)

    assert "users (page 2)" in message and "truncated" in message


def test_a_cut_connection_is_retried(fake: FakeOkta, read: Callable[..., ReadResult], directory: list[str]) -> None:
    fake.inject("/api/v1/users", "cut", skip=2, times=2)

    snapshot = read(None)

    assert isinstance(snapshot, Snapshot) and len(snapshot.users) == 1_000


def test_an_unreachable_org_fails_with_the_address_to_check(settings: Callable[..., object]) -> None:
    from connectors.okta import Connector, Settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = Connector(
        "okta-test",
        Settings(url=f"http://127.0.0.1:{port}", token_env="SYNCD_TEST_OKTA_TOKEN", retry_backoff=0.01, max_retries=1),
    )
    settings()  # sets the token variable

    with pytest.raises(ConnectorError) as caught:
        connector.read(None)

    assert f"127.0.0.1:{port}" in str(caught.value) and "connection failed" in str(caught.value)


def test_a_missing_token_variable_is_named(read: Callable[..., ReadResult]) -> None:
    message = failure(read, token_env="SYNCD_TEST_OKTA_TOKEN_NOT_SET")

    assert "SYNCD_TEST_OKTA_TOKEN_NOT_SET" in message


def test_a_wrong_org_url_path_is_reported_as_such(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    fake.fail("/api/v1/groups", status=404, times=5)

    message = failure(read)

    assert "404" in message and "org URL" in message


def test_a_failure_stops_the_requests_still_running_beside_it(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    for i in range(10_000):
        fake.add_user(f"u{i:05d}.x@acme.com")
    fake.add_group("Staff")
    fake.latency = 0.01
    fake.fail("/api/v1/groups", status=500, skip=0, times=100)

    message = failure(read, max_retries=0)

    assert "groups (page 1)" in message  # the first real failure, not a sibling's "stopped"
    assert fake.count("/api/v1/users") < 50  # the user list stopped instead of walking all 50 pages


def test_a_failing_member_read_is_the_error_reported(fake: FakeOkta, read: Callable[..., ReadResult]) -> None:
    groups = [fake.add_group(f"Team {i}") for i in range(40)]
    fake.latency = 0.01
    fake.fail(f"/api/v1/groups/{groups[25]}/users", status=502, times=100)

    message = failure(read, max_retries=0)

    assert f"members of group {groups[25]}" in message and "HTTP 502" in message
    assert fake.count("/api/v1/groups/") < 40
