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
def synced(
    store: Any, database_url: str, fake: FakeOkta, write_config: Callable[..., Path], cli: Callable[..., Any]
) -> Callable[..., Any]:
    """``run(*args)``: the CLI against a config with one Okta source pointing at the fake."""
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


def test_a_failing_okta_read_exits_1_with_one_line_and_changes_nobody(
    fake: FakeOkta, synced: Callable[..., Any]
) -> None:
    for name in ("ada", "bob", "cy"):
        fake.add_user(f"{name}.x@acme.com")
    assert synced("sync", "okta")[0] == 0
    before = members(synced)
    fake.fail("/api/v1/users", status=500, skip=0, times=100)

    code, _, err = synced("sync", "okta", "--full")

    assert code == 1
    assert err.count("\n") == 1 and "source okta:" in err and "HTTP 500" in err
    assert fake.api_token not in err
    assert members(synced) == before
