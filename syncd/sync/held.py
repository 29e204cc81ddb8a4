"""The guard over SCIM pushes: removals an IdP pushes past the org's threshold wait in one held plan.

A source run is guarded as a whole plan (:mod:`syncd.sync.guard`); a SCIM push arrives one request at a time, so an IdP
unassigning the app from everyone (or a wrong scoping filter) would remove the whole org request by request. Here
the suspensions and deprovisions SCIM writes caused in the org's rolling ``scim_guard_window`` (counted in the
ledger: actor ``token:*``, index on (org, action, at)) plus those a write would add are checked against
``guard_max_percent`` / ``guard_max_count``. Past them, the member's removal (all of that member's actions of the
write) is held: the SCIM request still succeeds and the IdP's view is stored, but the member stays as they were
until ``syncd approve`` (re-plans the held members and applies their removals) or ``syncd reject`` (discards them).
While a held plan is open every further SCIM removal joins it; joins and role changes keep flowing. Whole-org plans
(source runs, housekeeping) leave the held members' removals to the held plan (:func:`withhold`).

Every SCIM write that removes someone asks whether a held plan is open and how many removals the window holds, so
those statements are composed once (:mod:`syncd.store.sql`); a write that removes no one asks nothing.

See docs/architecture.md, "Guard".
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee

from syncd import counters
from syncd.config import Policy, parse_interval
from syncd.domain.reconcile import Action, Plan
from syncd.logs import log_event
from syncd.store import sql
from syncd.store.models import HeldRemoval, LedgerEntry, Member, Organization, Source
from syncd.store.models import Plan as PlanRow
from syncd.sync import guard, ledger

log = logging.getLogger("syncd.held")
REMOVALS = ("member.suspend", "member.deprovision")
KIND = "scim-removals"
SCIM_ACTOR_PREFIX = "token:"


def removal_targets(actions: tuple[Action, ...] | list[Action]) -> set[str]:
    return {a.target for a in actions if a.action in REMOVALS}


@dataclass(frozen=True)
class HeldPlan:
    """The columns of an open held plan a SCIM write needs: its id and its summary (JSON text)."""

    id: str
    summary: str


def open_plan(org_id: int) -> HeldPlan | None:
    """The org's open held plan of SCIM removals, if any (at most one at a time)."""
    found = sql.rows(
        "held plans",
        lambda: PlanRow.select(PlanRow.id, PlanRow.summary).where((PlanRow.org == org_id) & (PlanRow.status == "held")),
        [org_id, "held"],
    )
    for plan_id, summary in found:
        row = HeldPlan(str(plan_id), summary or "{}")
        if is_scim(row):
            return row
    return None


def is_scim(row: PlanRow | HeldPlan) -> bool:
    return json.loads(row.summary or "{}").get("kind") == KIND


def recent_removals(org_id: int, window_seconds: int, now: datetime) -> int:
    """Suspensions and deprovisions SCIM writes applied in the org's window (ledger index on org, action, at)."""
    since = now - timedelta(seconds=window_seconds)
    found = sql.rows(
        "scim removals in window",
        lambda: LedgerEntry.select(peewee.fn.COUNT(LedgerEntry.id)).where(
            (LedgerEntry.org == org_id)
            & LedgerEntry.action.in_(list(REMOVALS))
            & (LedgerEntry.at >= since)
            & LedgerEntry.actor.startswith(SCIM_ACTOR_PREFIX)
        ),
        [org_id, *REMOVALS, since, f"{SCIM_ACTOR_PREFIX}%"],
    )
    return int(found[0][0] or 0)


def _active(org_id: int) -> int:
    return int(
        sql.rows(
            "active count",
            lambda: Member.select(peewee.fn.COUNT(Member.id)).where(
                (Member.org == org_id) & (Member.status == "active")
            ),
            [org_id, "active"],
        )[0][0]
    )


def verdict(org_id: int, adding: int, policy: Policy, now: datetime) -> str | None:
    """Why SCIM removals must be held now, or None: the window's removals plus ``adding`` against the thresholds,
    as a share of the members active at the window's start (active now plus those removed in it)."""
    window = parse_interval(policy.scim_guard_window, "scim_guard_window")
    recent = recent_removals(org_id, window, now)
    total = recent + adding
    within = f"within scim_guard_window {policy.scim_guard_window} ({recent} already applied)"
    if total > policy.guard_max_count:
        return f"SCIM writes would suspend or deprovision {total} members {within}, over guard_max_count {policy.guard_max_count}"
    base = _active(org_id) + recent
    percent = 100.0 * total / base if base else 100.0
    if percent > policy.guard_max_percent:
        return (
            f"SCIM writes would suspend or deprovision {total} of {base} members ({percent:.1f}%) {within}, "
            f"over guard_max_percent {policy.guard_max_percent:g}"
        )
    return None


def screen(org: Organization, plan: Plan, policy: Policy, actor: str, now: datetime) -> Plan:
    """The part of a SCIM write's plan to apply now; removals past the guard are held (stored, ledgered, alerted).

    Call inside the SCIM write transaction, with the org locked."""
    targets = removal_targets(plan.actions)
    if not targets:
        return plan
    row = open_plan(org.id)
    reason = None if row is not None else verdict(org.id, len(targets), policy, now)
    if row is None and reason is None:
        return plan
    held = [a for a in plan.actions if a.target in targets]
    hold(org, row, held, reason or "", actor, now)
    return Plan(tuple(a for a in plan.actions if a.target not in targets), plan.notes)


def hold(org: Organization, row: HeldPlan | None, actions: list[Action], reason: str, actor: str, now: datetime) -> str:
    """Add the members' actions to the org's held plan (made, ledgered and alerted when none is open)."""
    by_member: dict[str, list[Action]] = {}
    for action in actions:
        by_member.setdefault(action.target.removeprefix("member:"), []).append(action)
    if row is None:
        source = Source.get_or_none((Source.org == org.id) & (Source.kind == "scim"))
        plan_id = str(uuid.uuid4())
        source_name = source.name if source else None
        summary = {"kind": KIND, "reason": reason, "actions": 0, "removals": 0, "full": False, "source": source_name}
        PlanRow.create(
            id=plan_id,
            org=org.id,
            source=source.id if source else None,
            created_at=now,
            status="held",
            fingerprint=uuid.uuid4().hex,
            summary=json.dumps(summary, sort_keys=True),
            actions="[]",
        )
        row = HeldPlan(plan_id, json.dumps(summary, sort_keys=True))
        guard._announce(org.id, "plan.held", plan_id, {**summary, "status": "held"}, now)
        ledger.append(
            org.id,
            actor=actor,
            action="plan.held",
            target=f"plan:{plan_id}",
            after={**summary, "status": "held"},
            reason=f"{reason}; review with 'syncd plan --org {org.slug}', apply with 'syncd approve {plan_id}' "
            f"or discard with 'syncd reject {plan_id} --by NAME'",
            announce=False,  # the plan.held event above is its event, in the shape of the run guard's
        )
        log_event(log, "plan.held", logging.WARNING, org=org.slug, plan=plan_id, reason=reason, kind=KIND)
    insert = sql.written(
        "hold removal",
        lambda d: (
            'INSERT INTO "held_removal" ("org_id", "plan_id", "match_key", "actions", "created_at") '
            f"VALUES ({d.marks(5)}) ON CONFLICT DO NOTHING"
        ),
    )
    new: list[str] = []
    for key, member_actions in by_member.items():
        text = json.dumps([a.as_dict() for a in member_actions], sort_keys=True, default=str)
        if sql.run(insert, (org.id, row.id, key, text, now)).rowcount:  # 0: already held (unique plan, match_key)
            new.append(key)
    if not new:
        return row.id
    counters.scim_write_held(org.slug)
    summary = json.loads(row.summary)
    summary["removals"] = summary.get("removals", 0) + len(new)
    summary["actions"] = summary.get("actions", 0) + sum(len(by_member[k]) for k in new)
    update = sql.written("held summary", lambda d: f'UPDATE "plan" SET "summary" = {d.param} WHERE "id" = {d.param}')
    sql.run(update, (json.dumps(summary, sort_keys=True), row.id))
    return row.id


def held_keys(row: PlanRow | HeldPlan) -> list[str]:
    return [k for (k,) in HeldRemoval.select(HeldRemoval.match_key).where(HeldRemoval.plan == row.id).tuples()]


def actions_of(row: PlanRow) -> list[Action]:
    """The actions a held plan holds: the stored list, or for a SCIM plan each held member's actions."""
    if not is_scim(row):
        return [Action.from_dict(a) for a in json.loads(row.actions)]
    found: list[Action] = []
    query = HeldRemoval.select(HeldRemoval.actions).where(HeldRemoval.plan == row.id).order_by(HeldRemoval.match_key)
    for (text,) in query.tuples():
        found += [Action.from_dict(a) for a in json.loads(text)]
    return found


def withhold(org_id: int, plan: Plan) -> Plan:
    """A whole-org plan without the removals an open SCIM held plan already holds (they wait for its decision)."""
    targets = removal_targets(plan.actions)
    if not targets:
        return plan
    row = open_plan(org_id)
    if row is None:
        return plan
    waiting = {f"member:{key}" for key in held_keys(row)} & targets
    if not waiting:
        return plan
    return Plan(tuple(a for a in plan.actions if a.target not in waiting), plan.notes)


def clear(row: PlanRow) -> int:
    return int(HeldRemoval.delete().where(HeldRemoval.plan == row.id).execute())


def counts() -> dict[int, int]:
    """Held SCIM removals per org id (metrics)."""
    query = HeldRemoval.select(HeldRemoval.org, peewee.fn.COUNT(HeldRemoval.id)).group_by(HeldRemoval.org)
    return {org_id: int(n) for org_id, n in query.tuples()}


__all__ = [
    "REMOVALS",
    "HeldPlan",
    "actions_of",
    "clear",
    "held_keys",
    "hold",
    "is_scim",
    "open_plan",
    "screen",
    "withhold",
]
