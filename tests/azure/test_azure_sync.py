"""End to end: the fake Graph read by the ``azure`` connector through the pipeline (``syncd sync``) into the store.

These run ``syncd.sync.pipeline.run_source`` — what ``syncd sync NAME`` calls — against SQLite and the real PostgreSQL,
and check what lands in the store: identities, directory groups, memberships, members' status, and the cursor that
commits with them. A failed read must leave everything as it was, cursor included.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.admin import shell
from syncd.common.errors import ConnectorError
from syncd.config import Config
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Member, Source
from tests.fakes.graph import FakeGraph

NOW = datetime.datetime(2026, 11, 25, 12, 0)  # naive UTC, as the store keeps times (syncd.clock)
SyncConfig = Callable[..., Config]


@pytest.fixture
def sync_config(tmp_path: Path, graph: FakeGraph, secret_file: Path) -> Callable[..., Config]:
    """Write a config with one org and the Entra source at the fake; start the shell (store migrated, org declared)."""

    def make(database_url: str, **extra: object) -> Config:
        lines = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
        path = tmp_path / "syncd.toml"
        path.write_text(
            f"""
[database]
url = {json.dumps(database_url)}

[[orgs]]
slug = "contoso"
name = "Contoso"
domains = ["contoso.example"]
[orgs.policy]
guard_max_percent = 100
guard_max_count = 100000

[[sources]]
name = "entra"
org = "contoso"
kind = "azure"
tenant_id = {json.dumps(graph.tenant_id)}
client_id = {json.dumps(graph.client_id)}
client_secret_file = {json.dumps(str(secret_file))}
ca_file = {json.dumps(str(graph.ca_file))}
authority_host = {json.dumps(graph.url)}
graph_url = {json.dumps(graph.url)}
max_throttle_wait = 5
{chr(10).join(lines)}
""",
            encoding="utf-8",
        )
        return shell.start(str(path)).config

    return make


def _sync(config: Config, minutes: int = 0, full: bool = False) -> None:
    from syncd.sync.pipeline import run_source

    run_source(config, "entra", full=full, actor="source:entra", now=NOW + datetime.timedelta(minutes=minutes))


def _identities() -> dict[str, Identity]:
    return {i.key: i for i in Identity.select().join(Source).where(Source.name == "entra")}


def _members(group_key: str) -> set[str]:
    group = DirectoryGroup.select().join(Source).where(Source.name == "entra", DirectoryGroup.key == group_key).get()
    return {m.member_key for m in GroupMember.select().where(GroupMember.group == group)}


def _status() -> dict[str, str]:
    return {m.email: m.status for m in Member.select()}


def _cursor() -> str | None:
    return Source.get(Source.name == "entra").cursor


def test_first_full_sync_then_incremental_rounds(
    graph: FakeGraph, sync_config: SyncConfig, database_url: str, store: object
) -> None:
    ada, bob = graph.add_user(name="ada"), graph.add_user(name="bob", accountEnabled=False)
    group = graph.add_group("Engineering", members=[ada])
    config = sync_config(database_url)

    _sync(config)

    assert {k: i.active for k, i in _identities().items()} == {ada: True, bob: False}
    assert _members(group) == {ada}
    assert _status()["ada@contoso.example"] == "active"
    first_cursor = _cursor()
    assert first_cursor and "$deltatoken=" in first_cursor

    graph.update_user(ada, jobTitle="CTO")
    carol = graph.add_user(name="carol")
    graph.add_member(group, carol)
    _sync(config, minutes=15)

    identities = _identities()
    assert identities[ada].title == "CTO" and carol in identities
    assert _members(group) == {ada, carol}
    assert _cursor() not in (None, first_cursor)


def test_deleted_user_is_suspended_and_restored_user_reactivated(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str
) -> None:
    ada = graph.add_user(name="ada")
    graph.add_user(name="bob")
    config = sync_config(sqlite_url)
    _sync(config)

    graph.delete_user(ada)
    _sync(config, minutes=15)
    assert _status()["ada@contoso.example"] == "suspended"

    graph.restore_user(ada)
    _sync(config, minutes=30)
    assert _status()["ada@contoso.example"] == "active"


def test_purged_user_is_suspended_not_deprovisioned_at_once(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str
) -> None:
    ada = graph.add_user(name="ada")
    graph.add_user(name="bob")
    config = sync_config(sqlite_url)
    _sync(config)

    graph.purge_user(ada)
    _sync(config, minutes=15)

    assert _status()["ada@contoso.example"] == "suspended"


def test_five_thousand_member_group_across_pages_is_stored_whole(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str
) -> None:
    graph.members_per_page = 1000
    members = [graph.add_user(name=f"member{i}", journal=False) for i in range(5000)]
    group = graph.add_group("Everyone", members=members, journal=False)
    config = sync_config(sqlite_url)

    _sync(config)

    assert _members(group) == set(members)
    graph.remove_member(group, members[0])
    graph.add_member(group, graph.add_user(name="newcomer"))
    _sync(config, minutes=15)
    assert len(_members(group)) == 5000 and members[0] not in _members(group)


def test_synchronization_reset_resyncs_as_a_complete_snapshot(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str
) -> None:
    ada, bob = graph.add_user(name="ada"), graph.add_user(name="bob")
    config = sync_config(sqlite_url)
    _sync(config)
    graph.reset_delta_tokens("410")
    graph.users.pop(bob)  # gone without a journal entry: only a complete snapshot can tell

    _sync(config, minutes=15)

    assert _status()["bob@contoso.example"] == "suspended"
    assert _status()["ada@contoso.example"] == "active"
    assert ada in _identities()


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        ("invalid-json", {}),
        ("status", {"status": 500, "times": 100}),
        ("status", {"status": 403, "body": {"error": {"code": "Authorization_RequestDenied", "message": "x"}}}),
        ("cut", {"times": 100}),
    ],
)
def test_failed_read_changes_nothing_and_keeps_the_cursor(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str, fault: str, options: dict[str, object]
) -> None:
    ada = graph.add_user(name="ada")
    graph.add_user(name="bob")
    config = sync_config(sqlite_url)
    _sync(config)
    cursor = _cursor()
    graph.update_user(ada, jobTitle="CTO")
    graph.delete_user(graph.add_user(name="carol"))
    graph.fail("/v1.0/users/delta", fault, **options)  # type: ignore[arg-type]

    with pytest.raises(ConnectorError, match="source entra"):
        _sync(config, minutes=15)

    assert _cursor() == cursor
    assert _identities()[ada].title is None
    assert set(_status().values()) == {"active"}


def test_throttled_sync_waits_and_completes(graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str) -> None:
    ada = graph.add_user(name="ada")
    config = sync_config(sqlite_url)
    graph.throttle(times=1, retry_after="1")

    _sync(config)

    assert ada in _identities()
    assert len(graph.graph_requests("/v1.0/users/delta")) == 2  # the throttled one, then its retry


def test_wrong_secret_fails_the_sync_without_leaking_it(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str, secret_file: Path
) -> None:
    secret_file.write_text("not-the-secret", encoding="utf-8")
    config = sync_config(sqlite_url)

    with pytest.raises(ConnectorError, match="AADSTS7000215") as caught:
        _sync(config)

    assert "not-the-secret" not in str(caught.value)
    assert _identities() == {} and _cursor() is None


def test_syncd_sync_command_reads_the_tenant(
    graph: FakeGraph, sync_config: SyncConfig, sqlite_url: str, cli: Callable[..., object], tmp_path: Path
) -> None:
    ada = graph.add_user(name="ada")
    sync_config(sqlite_url)

    result = cli("--config", str(tmp_path / "syncd.toml"), "sync", "entra")

    assert result.code == 0, result.stderr  # type: ignore[attr-defined]
    assert ada in _identities()


def test_graph_manager_is_the_members_manager_through_full_and_incremental_rounds(
    graph: FakeGraph, sync_config: SyncConfig, database_url: str, store: object
) -> None:
    from syncd.admin import members
    from syncd.sync import orgs

    boss, deputy = graph.add_user(name="boss"), graph.add_user(name="deputy")
    report = graph.add_user(name="report")
    graph.set_manager(report, boss)
    config = sync_config(database_url)

    def managers() -> dict[str, str | None]:
        return {row["email"]: row["manager"] for row in members.listing(orgs.get("contoso"))}

    _sync(config)
    assert managers() == {
        "boss@contoso.example": None,
        "deputy@contoso.example": None,
        "report@contoso.example": "boss@contoso.example",
    }
    graph.set_manager(report, deputy)
    _sync(config, minutes=15)
    assert managers()["report@contoso.example"] == "deputy@contoso.example"
    graph.update_user(report, jobTitle="Lead")  # a change elsewhere keeps the manager
    _sync(config, minutes=30)
    assert managers()["report@contoso.example"] == "deputy@contoso.example"
    graph.set_manager(report, None)
    _sync(config, minutes=45)
    assert managers()["report@contoso.example"] is None
