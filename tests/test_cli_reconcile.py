"""The reconciliation commands as an admin runs them: sync, plan (exit codes), approve, members, sources.

The org's source is a real HR export: each test writes a CSV (or JSON) file next to the config and runs the real
commands, so the file connector reads it as it would read the export in production.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from syncd.store.models import LedgerEntry, Member
from tests.conftest import CliResult

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

HEADER = ("Employee ID", "Email", "Username", "Full Name", "Groups", "Status")
Row = tuple[str, str, str, str, str, str]


def person(name: str, *groups: str, status: str = "active") -> Row:
    """One export row: ``Employee ID, Email, Username, Full Name, Groups, Status`` (groups joined by ``;``)."""
    return (f"E-{name}", f"{name}@acme.com", name, name.title(), ";".join(groups), status)


STAFF = tuple(person(f"u{i}") for i in range(10))
ALICE = person("alice", "IT Admins", "Engineering")


def write_csv(path: Path, rows: Iterable[Row], *, raw: dict[int, str] | None = None) -> None:
    """Write an export with the header and ``rows``; ``raw`` puts lines as written at these (1-based) line numbers."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows((HEADER, *rows))
    lines = buffer.getvalue().splitlines()
    for number, line in sorted((raw or {}).items()):
        lines.insert(number - 1, line)
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


class Admin:
    """``syncd --config CONFIG ...`` against org acme, whose file source ``hr`` reads ``export``."""

    def __init__(self, cli: Callable[..., CliResult], config: Path, export: Path) -> None:
        self.cli, self.config, self.export = cli, config, export

    def __call__(self, *args: str) -> CliResult:
        return self.cli("--config", str(self.config), *args)

    def exports(self, *rows: Row, raw: dict[int, str] | None = None) -> None:
        write_csv(self.export, rows, raw=raw)


@pytest.fixture
def admin(cli, store, database_url, write_config, tmp_path) -> Admin:
    """Ten staff and Alice (IT Admins, Engineering) in ``hr.csv``; the config names it relative to its folder."""
    write_csv(tmp_path / "hr.csv", (*STAFF, ALICE))
    config = write_config(CONFIG.format(url=database_url, path="hr.csv"))
    return Admin(cli, config, tmp_path / "hr.csv")


def statuses() -> dict[str, str]:
    return {m.email: m.status for m in Member.select()}


def ledger(target: str) -> list[LedgerEntry]:
    return list(LedgerEntry.select().where(LedgerEntry.target == target).order_by(LedgerEntry.seq))


def test_plan_shows_who_what_why_and_exits_2_then_0_after_sync(admin):
    planned = admin("plan", "hr")
    assert planned.code == 2, planned.stderr
    assert "alice@acme.com: joins as admin, teams engineering (maintainer)" in planned.stdout
    assert "group 'IT Admins', rule 1" in planned.stdout
    assert Member.select().count() == 0
    synced = admin("sync", "hr")
    assert synced.code == 0 and "12 changes applied" in synced.stdout
    assert "staged +11 ~0 -0 identities" in synced.stdout and "incomplete" not in synced.stdout
    again = admin("plan", "hr", "--format", "json")
    assert again.code == 0
    document = json.loads(again.stdout)
    assert document["actions"] == [] and document["held"] is False and document["org"] == "acme"
    assert document["complete"] is True and document["problems"] == []


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
    assert len(rows) == 11
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
        "manager": None,
    }
    shown = admin("members", "show", "--org", "acme", "alice@acme.com")
    assert "member.join" in shown.stdout and "identity: source hr, key E-alice, alice (active)" in shown.stdout


def test_removed_row_suspends_that_person_and_restoring_it_reactivates_them(admin):
    admin("sync", "hr")
    admin.exports(*STAFF[:5], *STAFF[6:], ALICE)
    planned = admin("plan", "hr")
    assert planned.code == 2 and "plan for source hr (org acme): 1 change" in planned.stdout
    assert "u5@acme.com: active -> suspended (no source asserts them any more)" in planned.stdout
    synced = admin("sync", "hr")
    assert synced.code == 0 and "1 change applied" in synced.stdout and "-1 identities" in synced.stdout
    assert {email for email, status in statuses().items() if status != "active"} == {"u5@acme.com"}
    [suspend] = [e for e in ledger("member:u5@acme.com") if e.action == "member.suspend"]
    assert suspend.reason == "active -> suspended (no source asserts them any more)" and suspend.actor == "source:hr"
    admin.exports(*STAFF, ALICE)
    assert admin("sync", "hr").code == 0
    assert set(statuses().values()) == {"active"}
    assert [e.action for e in ledger("member:u5@acme.com")] == ["member.join", "member.suspend", "member.reactivate"]


def test_terminated_status_suspends_and_on_leave_keeps_access(admin):
    admin("sync", "hr")
    admin.exports(person("u0", status="Terminated"), person("u1", status="On Leave"), *STAFF[2:], ALICE)
    planned = admin("plan", "hr")
    assert planned.code == 2 and "plan for source hr (org acme): 1 change" in planned.stdout
    assert "u0@acme.com: active -> suspended (disabled in source hr)" in planned.stdout
    assert admin("sync", "hr").code == 0
    assert {email for email, status in statuses().items() if status != "active"} == {"u0@acme.com"}


def test_changed_group_changes_the_role_and_team_naming_group_and_rule(admin):
    admin("sync", "hr")
    admin.exports(person("u0"), person("u1", "IT Admins"), *STAFF[2:], person("alice", "IT Admins"))
    planned = admin("plan", "hr")
    assert planned.code == 2, planned.stderr
    assert "u1@acme.com: member -> admin (group 'IT Admins', rule 1)" in planned.stdout
    assert "alice@acme.com:" in planned.stdout and "engineering" in planned.stdout
    assert admin("sync", "hr").code == 0
    assert Member.get(Member.email == "u1@acme.com").role == "admin"
    [promoted] = [e for e in ledger("member:u1@acme.com") if e.action == "member.role"]
    assert "group 'IT Admins', rule 1" in promoted.reason
    assert json.loads(promoted.after)["role"] == "admin" and json.loads(promoted.before)["role"] == "member"
    [left] = [e for e in ledger("member:alice@acme.com") if e.action == "team.leave"]
    assert json.loads(left.after)["teams"] == [] and json.loads(left.after)["role"] == "admin"


def test_broken_row_makes_the_read_incomplete_so_sync_suspends_nobody_and_names_the_line(admin):
    admin("sync", "hr")
    promoted = person("u4", "IT Admins")
    admin.exports(promoted, *STAFF[5:], ALICE, raw={3: "E-u3,u3@acme.com,u3,U3,,active,surplus"})
    synced = admin("sync", "hr")
    assert synced.code == 4, synced.stderr
    assert "(incomplete read: nothing removed)" in synced.stdout
    assert "problem: line 3: 7 fields where the header has 6; row skipped" in synced.stdout
    assert set(statuses().values()) == {"active"}
    assert LedgerEntry.select().where(LedgerEntry.action == "member.suspend").count() == 0
    assert Member.get(Member.email == "u4@acme.com").role == "admin"
    assert [e.action for e in ledger("member:u4@acme.com")] == ["member.join", "member.role"]
    listed = json.loads(admin("sources", "list", "--format", "json").stdout)
    hr = next(s for s in listed if s["name"] == "hr")
    assert hr["last_error"].startswith("incomplete read, nothing removed: line 3: 7 fields")


def test_broken_entry_in_a_json_export_is_named_by_line_and_suspends_nobody(admin, write_config, database_url):
    admin("sync", "hr")
    users = [{"email": f"u{i}@acme.com", "employee_id": f"E-u{i}", "name": f"U{i}"} for i in range(2)]
    users.append({"employee_id": "E-nobody", "name": "No Address"})
    admin.export.with_suffix(".json").write_text(json.dumps({"users": users}, indent=2), encoding="utf-8")
    config = write_config(CONFIG.format(url=database_url, path="hr.json"), "json.toml")
    synced = admin.cli("--config", str(config), "sync", "hr")
    assert synced.code == 4, synced.stderr
    assert "problem: line 13 (users[2]): no email and no user name; row skipped" in synced.stdout
    assert set(statuses().values()) == {"active"} and len(statuses()) == 11


def test_guard_hold_exits_3_and_approve_applies_it(admin):
    admin("sync", "hr")
    admin.exports(ALICE, person("u0"))
    planned = admin("plan", "hr")
    assert planned.code == 3 and "held by the guard" in planned.stdout
    held = admin("sync", "hr", "--format", "json")
    assert held.code == 3
    plan_id = json.loads(held.stdout)["plan_id"]
    assert Member.select().where(Member.status == "suspended").count() == 0
    listing = admin("plan", "--org", "acme")
    assert listing.code == 3 and f"pending: plan {plan_id}" in listing.stdout
    assert listing.stdout.startswith("plan for org acme: 0 changes\n")
    shown = admin("approve", plan_id, "--show")
    assert shown.code == 3 and shown.stdout.count("active -> suspended") == 9
    assert shown.stdout.count("active -> suspended (no source asserts them any more)") == 9
    approved = admin("approve", plan_id)
    assert approved.code == 0 and "9 changes applied" in approved.stdout, approved.stderr
    assert Member.select().where(Member.status == "suspended").count() == 9
    assert {e for e, s in statuses().items() if s == "active"} == {"alice@acme.com", "u0@acme.com"}
    assert admin("approve", plan_id).code == 1


def test_export_fixed_after_a_hold_makes_approve_plan_again_from_the_file(admin):
    admin("sync", "hr")
    admin.exports(ALICE, person("u0"))
    plan_id = json.loads(admin("sync", "hr", "--format", "json").stdout)["plan_id"]
    admin.exports(*STAFF[:9], ALICE)
    approved = admin("approve", plan_id)
    assert approved.code == 0, approved.stderr
    assert f"plan {plan_id} is stale" in approved.stdout and "applied the new plan: 1 change" in approved.stdout
    assert {e for e, s in statuses().items() if s != "active"} == {"u9@acme.com"}
    assert [e.action for e in ledger(f"plan:{plan_id}")] == ["plan.held", "plan.stale"]


def test_set_role_pin_beats_rules_until_unpinned(admin):
    admin("sync", "hr")
    pinned = admin("members", "set-role", "--org", "acme", "u1@acme.com", "admin", "--pin")
    assert pinned.code == 0 and "member -> admin" in pinned.stdout
    assert [e.action for e in ledger("member:u1@acme.com")] == ["member.join", "member.role", "member.pin"]
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
    assert Member.get(Member.email == "alice@acme.com").role == "owner"


def test_sources_list_shows_the_last_error(admin):
    admin.exports(person("x"), raw={2: "E-y,y@acme.com,y,Y,,maybe"})
    admin("sync", "hr")
    listed = json.loads(admin("sources", "list", "--format", "json").stdout)
    hr = next(s for s in listed if s["name"] == "hr")
    assert "incomplete read" in hr["last_error"] and hr["kind"] == "file"
    assert "line 2: active value 'maybe'" in hr["last_error"]
    assert any(s["name"] == "scim:acme" for s in listed)


def test_missing_export_is_one_line_error_and_changes_nothing(admin):
    admin("sync", "hr")
    admin.export.unlink()
    result = admin("sync", "hr")
    assert result.code == 1 and "source hr" in result.stderr and "file not found" in result.stderr
    assert result.stderr.count("\n") == 1
    assert set(statuses().values()) == {"active"} and len(statuses()) == 11


def test_unknown_source_is_one_line_error(admin):
    result = admin("sync", "nope")
    assert result.code == 1 and "no source named 'nope'" in result.stderr


def test_rule_change_shows_in_plan_org_and_sync_org_applies_it(admin, write_config, database_url, cli):
    admin("sync", "hr")
    promoted = (
        CONFIG.format(url=database_url, path="hr.csv")
        + '\n[[orgs.rules]]\nattribute = {user_name = "u1"}\nrole = "admin"\n'
    )
    moved = write_config(promoted, "promoted.toml")
    planned = cli("--config", str(moved), "plan", "--org", "acme")
    assert planned.code == 2 and "u1@acme.com: member -> admin (attribute user_name='u1', rule 3)" in planned.stdout
    applied = cli("--config", str(moved), "sync", "--org", "acme")
    assert applied.code == 0 and "org acme: 1 change applied" in applied.stdout
    assert Member.get(Member.email == "u1@acme.com").role == "admin"


def test_times_never_go_backwards_along_the_chain_after_an_approval(admin):
    admin("sync", "hr")
    admin.exports(ALICE, person("u0"))
    plan_id = json.loads(admin("sync", "hr", "--format", "json").stdout)["plan_id"]
    assert admin("approve", plan_id).code == 0
    times = [e.at for e in LedgerEntry.select().order_by(LedgerEntry.seq)]
    assert times == sorted(times)


def test_a_guard_reason_counts_one_member_in_the_singular(admin, write_config, database_url):
    admin.config.write_text(admin.config.read_text().replace("guard_max_count = 50", "guard_max_count = 0"))
    admin("sync", "hr")
    admin.exports(*STAFF[:9], ALICE)
    held = admin("sync", "hr")
    assert held.code == 3 and "would suspend or deprovision 1 member, over guard_max_count 0" in held.stdout


def test_a_suspended_members_role_and_teams_read_as_dormant(admin):
    admin("sync", "hr")
    admin.exports(*STAFF)
    assert admin("sync", "hr").code == 0
    listed = admin("members", "list", "--org", "acme", "--status", "suspended")
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith("alice@acme.com")]
    assert "admin (dormant)" in line and "engineering (maintainer, dormant)" in line
    shown = admin("members", "show", "--org", "acme", "alice@acme.com")
    assert "role: admin (dormant)" in shown.stdout and "role and teams are dormant" in shown.stdout
    active = admin("members", "list", "--org", "acme", "--status", "active").stdout
    assert "dormant" not in active


def test_set_role_orgs_create_tokens_revoke_and_audit_prune_answer_in_json(admin):
    admin("sync", "hr")
    role = admin("members", "set-role", "--org", "acme", "u1@acme.com", "admin", "--pin", "--format", "json")
    answer = json.loads(role.stdout)
    assert answer["role"] == "admin" and answer["pinned"] is True and answer["changed"] is True
    created = json.loads(admin("orgs", "create", "beta", "--name", "Beta", "--format", "json").stdout)
    assert created["slug"] == "beta" and created["scim_source"] == "scim:beta"
    token = admin("tokens", "create", "--org", "beta", "--scope", "read").stdout
    token_id = token.split()[1]
    revoked = json.loads(admin("tokens", "revoke", token_id, "--format", "json").stdout)
    assert revoked["id"] == int(token_id) and revoked["org"] == "beta" and revoked["revoked_at"]
    pruned = json.loads(admin("audit", "prune", "--org", "acme", "--before", "2000-01-01", "--format", "json").stdout)
    assert pruned == {
        "org": "acme",
        "before": "2000-01-01T00:00:00.000000Z",
        "pruned": 0,
        "through_seq": None,
        "checkpoint_seq": None,
    }
