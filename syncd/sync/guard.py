"""The guard: a plan that would suspend or deprovision too many members is held, not applied (docs/architecture.md,
"Data flow").

Suspensions and deprovisions count together, against the org's ``guard_max_percent`` of active members and its
``guard_max_count``. A held plan is stored with its actions and a fingerprint of every input it was computed from,
and ledgered (``plan.held``); ``syncd approve`` applies exactly that plan only while the fingerprint still matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from syncd.config import Policy
from syncd.domain.reconcile import Plan, RuleLike
from syncd.store.models import Organization, Source
from syncd.store.models import Plan as PlanRow
from syncd.sync import ledger, outbox
from syncd.sync.gather import Inputs


def verdict(plan: Plan, active: int, policy: Policy) -> str | None:
    """Why the plan must be held, or None when it may be applied."""
    return verdict_of(plan.removals, active, policy)


def verdict_of(removals: int, active: int, policy: Policy) -> str | None:
    """Why a plan with this many removals must be held (a plan made in chunks counts them over its chunks)."""
    if removals == 0:
        return None
    percent = 100.0 * removals / active if active else 100.0
    if removals > policy.guard_max_count:
        who = "1 member" if removals == 1 else f"{removals} members"
        return f"would suspend or deprovision {who}, over guard_max_count {policy.guard_max_count}"
    if percent > policy.guard_max_percent:
        return (
            f"would suspend or deprovision {removals} of {active} active members ({percent:.1f}%), "
            f"over guard_max_percent {policy.guard_max_percent:g}"
        )
    return None


def fingerprint(inputs: Inputs, rules: Sequence[RuleLike]) -> str:
    """SHA-256 over a canonical encoding of the planner's inputs (sorted, so the same state gives the same digest
    in any process)."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        digest.update(repr(value).encode("utf-8"))
        digest.update(b"\n")

    feed([_plain(rule) for rule in rules])
    feed(dataclasses.astuple(inputs.policy))
    feed(sorted(inputs.observed.precedence.items()))
    for identity in sorted(inputs.observed.identities, key=lambda i: (i.source, i.key)):
        feed(
            (
                identity.source,
                identity.key,
                identity.match_key,
                identity.user_name,
                identity.email,
                identity.display_name,
                identity.active,
                sorted((k, repr(v)) for k, v in identity.attributes.items()),
                sorted(identity.groups),
            )
        )
    for group in sorted(inputs.observed.groups, key=lambda g: (g.source, g.key)):
        feed((group.source, group.key, group.display_name, group.external_id, sorted(group.member_groups)))
    for key in sorted(inputs.current.members):
        member = inputs.current.members[key]
        feed((key, dataclasses.astuple(member.state), str(member.suspended_at)))
    feed(sorted((slug, parent or "") for slug, parent in inputs.current.teams.items()))
    feed((inputs.current.active_owners, inputs.active))
    return digest.hexdigest()


def _plain(rule: RuleLike) -> Any:
    if dataclasses.is_dataclass(rule) and not isinstance(rule, type):
        return sorted((k, repr(v)) for k, v in dataclasses.asdict(rule).items())
    return repr(rule)


def hold(
    org: Organization,
    source: Source | None,
    plan: Plan,
    digest: str,
    reason: str,
    *,
    read_cursor: str | None,
    full: bool,
    actor: str,
    now: datetime,
) -> tuple[str, bool]:
    """Store and ledger a held plan; call inside a write transaction. Returns (plan id, newly held).

    The same plan held again (same inputs, so same fingerprint) is not stored twice: a source polled every 15
    minutes while an admin decides must not flood the ledger.
    """
    same = (
        PlanRow.select()
        .where(
            (PlanRow.org == org.id)
            & (PlanRow.status == "held")
            & (PlanRow.fingerprint == digest)
            & (PlanRow.source == (source.id if source else None))
        )
        .first()
    )
    if same is not None:
        return same.id, False
    plan_id = str(uuid.uuid4())
    summary = {
        "reason": reason,
        "actions": len(plan.actions),
        "removals": plan.removals,
        "full": full,
        "source": source.name if source else None,
    }
    PlanRow.create(
        id=plan_id,
        org=org.id,
        source=source.id if source else None,
        created_at=now,
        status="held",
        fingerprint=digest,
        summary=json.dumps(summary, sort_keys=True),
        actions=json.dumps([a.as_dict() for a in plan.actions], sort_keys=True, default=str),
        cursor=read_cursor,
    )
    _announce(org.id, "plan.held", plan_id, {**summary, "status": "held"}, now)
    ledger.append(
        org.id,
        actor=actor,
        action="plan.held",
        target=f"plan:{plan_id}",
        after={**summary, "status": "held", "fingerprint": digest},
        reason=f"{reason}; review with 'syncd plan --org {org.slug}', apply with 'syncd approve {plan_id}'",
        announce=False,
    )
    return plan_id, True


def decide(row: PlanRow, status: str, actor: str, now: datetime, reason: str) -> None:
    """Mark a held plan approved or stale, ledgered; inside a write transaction."""
    before = {"status": row.status, "fingerprint": row.fingerprint}
    row.status, row.decided_at = status, now
    row.save()
    _announce(row.org_id, f"plan.{status}", row.id, {"status": status, "reason": reason}, now)
    ledger.append(
        row.org_id,
        actor=actor,
        action=f"plan.{status}",
        target=f"plan:{row.id}",
        before=before,
        after={"status": status, "fingerprint": row.fingerprint},
        reason=reason,
        announce=False,
    )


def _announce(org_id: int, event: str, plan_id: str, payload: dict[str, Any], now: datetime) -> None:
    """An outbox event, so that a held plan alerts someone (webhook) rather than waiting to be noticed."""
    outbox.enqueue(
        org_id,
        event,
        json.dumps({"plan_id": plan_id, **payload}, sort_keys=True, default=str),
        at=now,
        order_key=f"plan:{plan_id}",
    )
