"""``syncd sync`` end to end with an Okta source: the fake org in, members, roles and suspensions out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.okta import FakeOkta

HOUR = 3600.0


@pytest.fixture
def okta_cli(
    store: Any, database_url: str, fake: FakeOkta, write_config: Callable[..., Path], cli: Callable[..., Any]
) -> Callable[..., Callable[..., Any]]:
    """``okta_cli(**keys)`` → ``run(*args)``: the CLI with a config whose Okta source points at the fake."""

    def configure(**keys: Any) -> Callable[..., Any]:
        extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
        return _runner(database_url, fake, write_config, cli, extra)

    return configure


@pytest.fixture
def synced(okta_cli: Callable[..., Callable[..., Any]]) -> Callable[..., Any]:
    return okta_cli()


def _runner(
    database_url: str, fake: FakeOkta, write_config: Callable[..., Path], cli: Callable[..., Any], extra: str
) -> Callable[..., Any]:
    write_config(fake.api_token, name="okta-token")  # beside the config: a relative token_file resolves there
    config = write_config(
        f"""
[database]
url = "{database_url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]
[orgs.policy]
guard_max_percent = 100
guard_max_count = 1000
[[orgs.rules]]
group = "IT Admins"
role = "admin"
[[orgs.rules]]
group = "Engineering"
team = "engineering"

[[sources]]
name = "okta"
org = "acme"
kind = "okta"
url = "{fake.url}"
token_file = "okta-token"
retry_backoff = 0.01
max_retries = 1
{extra}
"""
    )

    def run(*args: str) -> tuple[int, str, str]:
        result = cli("--config", str(config), *args)
        return result.code, result.stdout, result.stderr

    return run


def members(run: Callable[..., Any]) -> dict[str, tuple[str, str, list[str]]]:
    code, out, err = run("members", "list", "--org", "acme", "--format", "json")
    assert code == 0, err
    return {m["email"]: (m["status"], m["role"], [t["team"] for t in m["teams"]]) for m in json.loads(out)}


def test_okta_source_syncs_end_to_end_through_syncd_sync(fake: FakeOkta, synced: Callable[..., Any]) -> None:
    ada = fake.add_user("ada.lovelace@acme.com")
    bob = fake.add_user("bob.builder@acme.com")
    fake.add_user("cy.suspended@acme.com", status="SUSPENDED")
    fake.add_user("dee.gone@acme.com", status="DEPROVISIONED")
    admins, engineering = fake.add_group("IT Admins"), fake.add_group("Engineering")
    fake.add_members(admins, [ada])
    fake.add_members(engineering, [ada, bob])
    fake.advance(HOUR)

    code, _, err = synced("sync", "okta")

    assert code == 0, err
    state = members(synced)
    assert state["ada.lovelace@acme.com"] == ("active", "admin", ["engineering"])
    assert state["bob.builder@acme.com"] == ("active", "member", ["engineering"])
    assert all(state[e][0] != "active" for e in ("cy.suspended@acme.com", "dee.gone@acme.com") if e in state)

    fake.advance(HOUR)
    fake.update_user(bob, status="DEPROVISIONED")
    fake.remove_member(admins, ada)
    fred = fake.add_user("fred.new@acme.com")
    fake.add_members(engineering, [fred])
    fake.advance(60)

    code, _, err = synced("sync", "okta")

    assert code == 0, err
    assert any("lastUpdated gt" in s.query.get("filter", "") for s in fake.seen)  # an incremental read
    state = members(synced)
    assert state["ada.lovelace@acme.com"] == ("active", "member", ["engineering"])
    assert state["bob.builder@acme.com"][0] == "suspended"
    assert state["fred.new@acme.com"] == ("active", "member", ["engineering"])


FAILURES = {
    "a 5xx on every retry": (lambda fake: fake.fail("/api/v1/users", status=500, times=100), "HTTP 500"),
    "a page failing halfway": (lambda fake: fake.fail("/api/v1/users", status=503, skip=1, times=100), "page 2"),
    "malformed JSON": (lambda fake: fake.inject("/api/v1/groups", "malformed", times=100), "not valid JSON"),
    "a truncated page": (lambda fake: fake.inject("/api/v1/users", "truncate", times=100), "truncated"),
    "a cut connection": (lambda fake: fake.inject("/api/v1/groups/", "cut", times=100), "connection failed"),
    "a revoked token": (lambda fake: setattr(fake, "api_token", "rotated-token-0987654321"), "HTTP 401"),
    "an under-privileged token": (
        lambda fake: setattr(fake, "api_token_scopes", frozenset({"okta.users.read"})),
        "HTTP 403",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failing_okta_read_exits_1_with_one_line_and_changes_nobody(
    fake: FakeOkta, synced: Callable[..., Any], failure: str
) -> None:
    ids = [fake.add_user(f"u{i:03d}.x@acme.com") for i in range(450)]
    fake.add_members(fake.add_group("Engineering"), ids, log=False)
    token = fake.api_token
    assert synced("sync", "okta")[0] == 0
    before = members(synced)
    inject, expected = FAILURES[failure]
    inject(fake)

    code, out, err = synced("sync", "okta", "--full")

    assert code == 1, out
    assert err.count("\n") == 1 and "source okta:" in err and expected in err
    assert token not in err and fake.api_token not in err
    assert members(synced) == before


def test_with_the_system_log_a_deleted_okta_user_is_suspended_by_the_next_incremental_sync(
    fake: FakeOkta, okta_cli: Callable[..., Callable[..., Any]]
) -> None:
    synced = okta_cli(system_log=True)
    ada, bob = fake.add_user("ada.x@acme.com"), fake.add_user("bob.x@acme.com")
    engineering = fake.add_group("Engineering")
    fake.add_members(engineering, [ada, bob])
    fake.advance(HOUR)
    assert synced("sync", "okta")[0] == 0
    fake.advance(HOUR)
    fake.update_user(bob, status="DEPROVISIONED")
    fake.delete_user(bob)
    fake.remove_member(engineering, ada)
    fake.advance(60)

    code, _, err = synced("sync", "okta")

    assert code == 0, err
    assert any(s.path == "/api/v1/logs" for s in fake.seen)
    state = members(synced)
    assert state["bob.x@acme.com"][0] == "suspended"
    assert state["ada.x@acme.com"] == ("active", "member", [])


def test_without_the_system_log_a_deleted_user_is_caught_by_the_full_snapshot(
    fake: FakeOkta, synced: Callable[..., Any]
) -> None:
    fake.add_user("ada.x@acme.com")
    bob = fake.add_user("bob.x@acme.com")
    fake.advance(HOUR)
    assert synced("sync", "okta")[0] == 0
    fake.advance(HOUR)
    fake.update_user(bob, status="DEPROVISIONED")  # deactivated and deleted between two runs
    fake.delete_user(bob)
    fake.add_user("cy.x@acme.com")
    fake.advance(60)
    assert synced("sync", "okta")[0] == 0
    state = members(synced)
    assert state["cy.x@acme.com"][0] == "active"  # the incremental read saw the new user ...
    assert state["bob.x@acme.com"][0] == "active"  # ... but a deletion leaves no lastUpdated to see

    code, _, err = synced("sync", "okta", "--full")

    assert code == 0, err
    state = members(synced)
    assert state["bob.x@acme.com"][0] == "suspended"
    assert state["ada.x@acme.com"][0] == state["cy.x@acme.com"][0] == "active"


def test_ten_thousand_okta_users_sync_over_many_pages(fake: FakeOkta, synced: Callable[..., Any]) -> None:
    ids = [fake.add_user(f"person{i:05d}.x@acme.com") for i in range(10_000)]
    engineering = fake.add_group("Engineering")
    fake.add_members(engineering, ids[:2_500], log=False)

    code, _, err = synced("sync", "okta")

    assert code == 0, err
    assert fake.count("/api/v1/users") == 50
    state = members(synced)
    assert len(state) == 10_000
    assert sum(teams == ["engineering"] for _, _, teams in state.values()) == 2_500


def test_okta_manager_id_becomes_the_members_manager(fake: FakeOkta, synced: Callable[..., Any]) -> None:
    boss = fake.add_user("boss@acme.com")
    deputy = fake.add_user("deputy@acme.com")
    fake.add_user("report@acme.com", managerId=boss)  # profile.managerId: the Okta id of the person's manager
    fake.advance(HOUR)

    def managers() -> dict[str, str | None]:
        code, out, err = synced("members", "list", "--org", "acme", "--format", "json")
        assert code == 0, err
        return {m["email"]: m["manager"] for m in json.loads(out)}

    assert synced("sync", "okta")[0] == 0
    assert managers() == {"boss@acme.com": None, "deputy@acme.com": None, "report@acme.com": "boss@acme.com"}
    fake.advance(HOUR)
    fake.update_user(fake.user_id("report@acme.com"), managerId=deputy)
    fake.advance(60)
    assert synced("sync", "okta")[0] == 0
    assert managers()["report@acme.com"] == "deputy@acme.com"
