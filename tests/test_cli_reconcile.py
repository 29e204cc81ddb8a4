"""The reconciliation commands as an admin runs them: sync, plan (exit codes), approve, members, sources."""

from __future__ import annotations

import json
import sys

import pytest

from syncd.store.models import LedgerEntry, Member
from tests.directory import DIRECTORIES, Directory, snapshot, stand_in_module, user

CONFIG = """
[database]
url = "{url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]
[orgs.policy]
guard_max_percent = 20
guard_max_count = 50
transfer_to = "it@acme.com"

[[orgs.rules]]
group = "IT Admins"
role = "admin"

[[orgs.rules]]
group = "Engineering"
team = "engineering"
team_role = "maintainer"

[[sources]]
name = "hr"
org = "acme"
kind = "file"
path = "{path}"
"""


@pytest.fixture
def admin(cli, store, database_url, write_config, tmp_path, monkeypatch):
    """Run ``syncd --config CONFIG ...`` against an org with a file source whose contents the test sets."""
    monkeypatch.setitem(sys.modules, "connectors.file", stand_in_module())
    path = str(tmp_path / "hr.csv")
    directory = Directory(snapshot(*(user(f"u{i}") for i in range(10)), user("alice", "IT Admins", "Engineering")))
    DIRECTORIES[path] = directory
    config = write_config(CONFIG.format(url=database_url, path=path))

    def run(*args: str):
        return cli("--config", str(config), *args)

    run.directory = directory  # type: ignore[attr-defined]
    yield run
    DIRECTORIES.pop(path, None)


def test_plan_shows_who_what_why_and_exits_2_then_0_after_sync(admin):
    planned = admin("plan", "hr")
    assert planned.code == 2, planned.stderr
    assert "alice@acme.com: joins as admin, teams engineering (maintainer)" in planned.stdout
    assert "group 'IT Admins', rule 1" in planned.stdout
    synced = admin("sync", "hr")
    assert synced.code == 0 and "12 changes applied" in synced.stdout
    again = admin("plan", "hr", "--format", "json")
    assert again.code == 0
    document = json.loads(again.stdout)
    assert document["actions"] == [] and document["held"] is False and document["org"] == "acme"


def test_plan_json_has_the_contract_fields(admin):
    result = admin("plan", "hr", "--format", "json")
    document = json.loads(result.stdout)
    assert {"plan_id", "org", "held", "actions"} <= set(document)
    action = next(a for a in document["actions"] if a["member"] == "alice@acme.com")
    assert {"member", "action", "before", "after", "reason"} <= set(action)
    assert action["action"] == "member.join" and action["before"] is None and action["after"]["role"] == "admin"


def test_members_list_json_matches_the_contract(admin):
    admin("sync", "hr")
    listed = admin("members", "list", "--org", "acme", "--format", "json")
    assert listed.code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    alice = next(r for r in rows if r["email"] == "alice@acme.com")
    assert alice == {
        "email": "alice@acme.com",
        "user_name": "alice",
        "display_name": "Alice",
        "status": "active",
        "role": "admin",
        "teams": [{"team": "engineering", "role": "maintainer"}],
        "sources": ["hr"],
        "pinned": False,
    }
    shown = admin("members", "show", "--org", "acme", "alice@acme.com")
    assert "member.join" in shown.stdout and "identity: source hr" in shown.stdout


def test_guard_hold_exits_3_and_approve_applies_it(admin):
    admin("sync", "hr")
    admin.directory.result = snapshot(user("alice", "IT Admins", "Engineering"), user("u0"), cursor="c2")
    planned = admin("plan", "hr")
    assert planned.code == 3 and "held by the guard" in planned.stdout
    held = admin("sync", "hr", "--format", "json")
    assert held.code == 3
    plan_id = json.loads(held.stdout)["plan_id"]
    assert Member.select().where(Member.status == "suspended").count() == 0
    listing = admin("plan", "--org", "acme")
    assert f"pending: plan {plan_id}" in listing.stdout
    shown = admin("approve", plan_id, "--show")
    assert shown.code == 3 and shown.stdout.count("active -> suspended") == 9
    approved = admin("approve", plan_id)
    assert approved.code == 0 and "9 changes applied" in approved.stdout, approved.stderr
    assert Member.select().where(Member.status == "suspended").count() == 9
    assert admin("approve", plan_id).code == 1


def test_set_role_pin_beats_rules_until_unpinned(admin):
    admin("sync", "hr")
    pinned = admin("members", "set-role", "--org", "acme", "u1@acme.com", "admin", "--pin")
    assert pinned.code == 0 and "member -> admin" in pinned.stdout
    assert [e.action for e in LedgerEntry.select().where(LedgerEntry.target == "member:u1@acme.com")] == [
        "member.join",
        "member.role",
        "member.pin",
    ]
    assert admin("sync", "hr").code == 0
    assert Member.get(Member.email == "u1@acme.com").role == "admin"
    unpinned = admin("members", "set-role", "--org", "acme", "u1@acme.com", "admin", "--unpin")
    assert unpinned.code == 0 and "admin -> member" in unpinned.stdout
    assert Member.get(Member.email == "u1@acme.com").role == "member"


def test_last_owner_cannot_be_demoted_by_hand(admin):
    admin("sync", "hr")
    assert admin("members", "set-role", "--org", "acme", "alice@acme.com", "owner", "--pin").code == 0
    refused = admin("members", "set-role", "--org", "acme", "alice@acme.com", "member")
    assert refused.code == 1 and "last owner" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_sources_list_shows_the_last_error(admin):
    admin.directory.result = snapshot(user("x"), complete=False)
    admin("sync", "hr")
    listed = json.loads(admin("sources", "list", "--format", "json").stdout)
    hr = next(s for s in listed if s["name"] == "hr")
    assert "incomplete read" in hr["last_error"] and hr["kind"] == "file"
    assert any(s["name"] == "scim:acme" for s in listed)


def test_unknown_source_is_one_line_error(admin):
    result = admin("sync", "nope")
    assert result.code == 1 and "no source named 'nope'" in result.stderr


def test_rule_change_shows_in_plan_org_and_sync_org_applies_it(admin, write_config, database_url, tmp_path, cli):
    admin("sync", "hr")
    path = str(tmp_path / "hr.csv")
    promoted = (
        CONFIG.format(url=database_url, path=path)
        + '\n[[orgs.rules]]\nattribute = {user_name = "u1"}\nrole = "admin"\n'
    )
    moved = write_config(promoted, "promoted.toml")
    planned = cli("--config", str(moved), "plan", "--org", "acme")
    assert planned.code == 2 and "u1@acme.com: member -> admin (attribute user_name='u1', rule 3)" in planned.stdout
    applied = cli("--config", str(moved), "sync", "--org", "acme")
    assert applied.code == 0 and "org acme: 1 change applied" in applied.stdout
    assert Member.get(Member.email == "u1@acme.com").role == "admin"
