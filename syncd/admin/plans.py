"""Plans as an operator reviews them: an org's plans the guard holds, and one plan with the actions it holds.

Holding, approving and rejecting are :mod:`syncd.sync.pipeline`'s and :mod:`syncd.sync.held`'s; this module reads
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from syncd.clock import iso_seconds
from syncd.domain.reconcile import Action
from syncd.store.models import Organization
from syncd.store.models import Plan as PlanRow
from syncd.sync import held


@dataclass(frozen=True)
class StoredPlan:
    """One stored plan: its org, status (held, applied, stale, rejected), why it was held and what it holds."""

    plan_id: str
    org: str
    status: str
    reason: str | None
    actions: list[Action]


def held_plans(org_id: int) -> list[dict[str, Any]]:
    """The org's held plans, oldest first, as ``syncd plan --format json`` lists them under ``held_plans``."""
    rows = PlanRow.select().where((PlanRow.org == org_id) & (PlanRow.status == "held")).order_by(PlanRow.created_at)
    found = []
    for row in rows:
        summary = json.loads(row.summary)
        found.append(
            {
                "plan_id": row.id,
                "created_at": iso_seconds(row.created_at),
                "reason": summary.get("reason", ""),
                "kind": summary.get("kind", "plan"),
                "removals": summary.get("removals", 0),
            }
        )
    return found


def find(plan_id: str) -> StoredPlan | None:
    """The plan ``plan_id`` with the actions it holds (a SCIM removals plan: each held member's), or None."""
    row = PlanRow.select(PlanRow, Organization).join(Organization).where(PlanRow.id == plan_id).first()
    if row is None:
        return None
    return StoredPlan(
        plan_id=row.id,
        org=row.org.slug,
        status=row.status,
        reason=json.loads(row.summary).get("reason"),
        actions=held.actions_of(row),
    )
