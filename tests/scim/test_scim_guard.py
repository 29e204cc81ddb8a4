"""The SCIM guard on both stores: past the org's thresholds within its window, a SCIM removal is held (the request
succeeds, the identity is stored as pushed, the member stays), while joins go on; approve and reject decide."""

from __future__ import annotations

import json
from datetime import timedelta

from syncd import config
from syncd.clock import utcnow
from syncd.store.models import HeldRemoval, Identity, LedgerEntry, Member
from syncd.store.models import Plan as PlanRow
from syncd.sync import pipeline


def statuses() -> dict[str, str]:
    return {m.email: m.status for m in Member.select()}


def test_removals_past_the_guard_are_held_and_joins_still_apply(scim):
    ids = [scim.a.create_user(f"u{i}", emails=[{"value": f"u{i}@acme.com"}])["id"] for i in range(10)]
    for user in ids[:3]:
        assert scim.a.delete(f"/Users/{user}").status == 204
    assert Identity.select().where(Identity.org == scim.org_a.id).count() == 7  # the IdP's view is stored
    assert sorted(s for s in statuses().values()) == ["active"] * 9 + ["suspended"]  # 1 of 10 is 10%: applied
    scim.a.create_user("late", emails=[{"value": "late@acme.com"}])
    assert statuses()["late@acme.com"] == "active"
    (row,) = PlanRow.select().where(PlanRow.status == "held")
    assert HeldRemoval.select().where(HeldRemoval.plan == row.id).count() == 2
    assert LedgerEntry.select().where(LedgerEntry.action == "plan.held").count() == 1

    cfg = config.parse({})
    pipeline.approve(cfg, row.id, actor="admin:alice")
    assert sorted(statuses().values()).count("suspended") == 3
    assert HeldRemoval.select().count() == 0
    assert LedgerEntry.get(LedgerEntry.action == "plan.approved").actor == "admin:alice"


def test_a_rejected_hold_leaves_everyone_and_says_who(scim):
    ids = [scim.a.create_user(f"r{i}", emails=[{"value": f"r{i}@acme.com"}])["id"] for i in range(4)]
    scim.a.patch(f"/Users/{ids[0]}", [{"op": "replace", "path": "active", "value": False}])  # 25%: held at once
    assert set(statuses().values()) == {"active"}
    (row,) = PlanRow.select().where(PlanRow.status == "held")
    result = pipeline.reject(row.id, actor="admin:bob")
    assert result.actions == 1 and set(statuses().values()) == {"active"}
    assert PlanRow.get_by_id(row.id).status == "rejected"
    assert LedgerEntry.get(LedgerEntry.action == "plan.rejected").actor == "admin:bob"


def test_removals_outside_the_window_no_longer_count(scim):
    from syncd.sync import held, orgs

    ids = [scim.a.create_user(f"w{i}", emails=[{"value": f"w{i}@acme.com"}])["id"] for i in range(12)]
    scim.a.delete(f"/Users/{ids[0]}")
    policy = orgs.policy_of(scim.org_a)
    assert held.recent_removals(scim.org_a.id, 3600, utcnow()) == 1
    assert held.recent_removals(scim.org_a.id, 3600, utcnow() + timedelta(hours=2)) == 0
    assert held.verdict(scim.org_a.id, 1, policy, utcnow()) is not None  # 2 of 12 in the window
    assert held.verdict(scim.org_a.id, 1, policy, utcnow() + timedelta(hours=2)) is None  # 1 of 11


def test_a_member_already_held_is_held_once_however_often_removed(scim):
    ids = [scim.a.create_user(f"h{i}", emails=[{"value": f"h{i}@acme.com"}])["id"] for i in range(4)]
    scim.a.patch(f"/Users/{ids[0]}", [{"op": "replace", "path": "active", "value": False}])  # 25%: held at once
    assert scim.a.delete(f"/Users/{ids[0]}").status == 204  # the same member's removal again, into the open plan
    (row,) = PlanRow.select().where(PlanRow.status == "held")
    assert HeldRemoval.select().where(HeldRemoval.plan == row.id).count() == 1
    assert json.loads(PlanRow.get_by_id(row.id).summary)["removals"] == 1
    assert set(statuses().values()) == {"active"}
