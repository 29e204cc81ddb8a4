"""The guard covers SCIM pushes: an IdP unassigning 60% of an org (DELETE, ``active: false``, Bulk, group removal)
through a running ``syncd serve`` gets its requests answered, but past the org's thresholds the removals wait in
one held plan; joins and role changes keep flowing; ``approve`` applies exactly the held removals and ``reject``
discards them, each ledgered with who decided. Real command, real HTTP, real reconciler."""

from __future__ import annotations

import json
import re

from syncd.store.models import LedgerEntry, OutboxEvent
from tests.directory_checks import members
from tests.service.scim_push import USER, Idp, acme_config, shape, token, wait_for_housekeeping

ORG = """[orgs.policy]
guard_max_percent = 10
guard_max_count = 50
scim_guard_window = "1h"

[[orgs.rules]]
group = "Engineering"
team = "engineering"
[[orgs.rules]]
group = "IT Admins"
role = "admin"
"""


def metric(text: str, name: str, org: str) -> float | None:
    for line in text.splitlines():
        match = re.match(rf'^{name}\{{org="{org}"\}} (\S+)$', line)
        if match:
            return float(match.group(1))
    return None


def test_scim_unassigning_most_of_an_org_is_held_then_approved_or_rejected(serve, tmp_path, cli):
    config = tmp_path / "syncd.toml"
    url = f"sqlite:///{tmp_path / 's.db'}"
    config.write_text(acme_config(url, server='housekeeping_every = "2s"', org=ORG), encoding="utf-8")
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    people = {f"p{i:02d}@acme.com": idp.user(f"p{i:02d}@acme.com") for i in range(20)}
    ids = list(people.values())
    engineering = idp.group("Engineering", ids)
    admins = idp.group("IT Admins", [])
    assert {shape(m) for m in members(cli, config).values()} == {("active", "member", ("engineering",))}

    # 60% unassigned, four ways: DELETE, active false, Bulk DELETE, group removal then disable (Entra's order).
    leavers = ids[:12]
    for user in leavers[0:3]:
        idp.delete(user)
    for user in leavers[3:6]:
        idp.disable(user)
    idp.bulk([{"method": "DELETE", "path": f"/Users/{user}", "bulkId": user} for user in leavers[6:9]])
    for user in leavers[9:12]:
        idp.remove_member(engineering, user)
        idp.send(
            "PUT",
            f"/Users/{user}",
            {
                "schemas": [USER],
                "userName": next(e for e, i in people.items() if i == user),
                "active": False,
                "emails": [{"value": next(e for e, i in people.items() if i == user), "primary": True}],
            },
        )
    # Joins and role changes keep flowing while removals are held.
    newbie = idp.user("newbie@acme.com")
    idp.add_members(engineering, newbie)
    idp.add_members(admins, ids[15])

    now = members(cli, config)
    suspended = {e for e, m in now.items() if m["status"] == "suspended"}
    assert len(suspended) == 2  # 2 of 20 is guard_max_percent 10; the third removal tripped the guard
    assert shape(now["newbie@acme.com"]) == ("active", "member", ("engineering",))
    assert shape(now["p15@acme.com"]) == ("active", "admin", ("engineering",))
    for email in ("p09@acme.com", "p10@acme.com", "p11@acme.com"):
        assert now[email]["status"] == "active" and now[email]["teams"] == []  # team left, suspension held
    held_emails = {e for e, i in people.items() if i in leavers} - suspended
    assert len(held_emails) == 10

    plan = cli("--config", str(config), "plan", "--org", "acme", "--format", "json")
    assert plan.code == 3, plan.stderr
    document = json.loads(plan.stdout)
    assert document["actions"] == []  # housekeeping leaves the held removals to the held plan
    (pending,) = document["held_plans"]
    assert pending["kind"] == "scim-removals" and pending["removals"] == 10
    plan_id = pending["plan_id"]
    shown = json.loads(cli("--config", str(config), "approve", plan_id, "--show", "--format", "json").stdout)
    assert {a["member"] for a in shown["actions"] if a["action"] == "member.suspend"} == held_emails
    assert {a["member"] for a in shown["actions"]} == held_emails
    assert len(idp.service.events("plan.held")) == 1
    scrape = idp.service.metrics().text
    assert metric(scrape, "syncd_scim_removals_held", "acme") == 10
    assert metric(scrape, "syncd_scim_writes_held_total", "acme") >= 1
    assert metric(scrape, "syncd_plans_held", "acme") == 1
    assert OutboxEvent.select().where(OutboxEvent.event_type == "plan.held").count() == 1

    # Housekeeping runs meanwhile and removes no one held.
    wait_for_housekeeping()
    assert {e for e, m in members(cli, config).items() if m["status"] == "suspended"} == suspended

    approved = cli("--config", str(config), "approve", plan_id, "--by", "alice", "--format", "json")
    assert approved.code == 0, approved.stderr
    assert json.loads(approved.stdout)["actions"] == len(shown["actions"])
    by_alice = LedgerEntry.select().where(
        (LedgerEntry.actor == "admin:alice") & (LedgerEntry.action == "member.suspend")
    )
    assert {entry.target for entry in by_alice} == {f"member:{email}" for email in held_emails}
    after = members(cli, config)
    assert {e for e, m in after.items() if m["status"] == "suspended"} == suspended | held_emails
    assert shape(after["newbie@acme.com"]) == ("active", "member", ("engineering",))
    decided = LedgerEntry.get((LedgerEntry.action == "plan.approved") & (LedgerEntry.target == f"plan:{plan_id}"))
    assert decided.actor == "admin:alice"
    assert metric(idp.service.metrics().text, "syncd_scim_removals_held", "acme") == 0

    # Another push past the guard: held again, and this time rejected.
    idp.delete(ids[12])
    idp.disable(ids[13])
    second = json.loads(cli("--config", str(config), "plan", "--org", "acme", "--format", "json").stdout)
    (pending,) = second["held_plans"]
    assert pending["removals"] == 2 and pending["plan_id"] != plan_id
    rejected = cli("--config", str(config), "reject", pending["plan_id"], "--by", "bob", "--format", "json")
    assert rejected.code == 0, rejected.stderr
    assert json.loads(rejected.stdout) == {
        "plan_id": pending["plan_id"],
        "org": "acme",
        "rejected": True,
        "by": "admin:bob",
        "discarded": 2,
    }
    final = members(cli, config)
    assert final["p12@acme.com"]["status"] == final["p13@acme.com"]["status"] == "active"
    decided = LedgerEntry.get(LedgerEntry.action == "plan.rejected")
    assert decided.actor == "admin:bob" and decided.target == f"plan:{pending['plan_id']}"
    again = cli("--config", str(config), "reject", pending["plan_id"], "--by", "bob")
    assert again.code == 1 and "not held" in again.stderr
