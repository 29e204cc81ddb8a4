"""Plain-data builders for planner tests: observed identities, groups, and applying a plan to a current state."""

from __future__ import annotations

from datetime import datetime

from syncd.config import Rule
from syncd.domain.reconcile import (
    Current,
    CurrentMember,
    MemberState,
    Observed,
    ObservedGroup,
    ObservedIdentity,
    Plan,
    PlanPolicy,
    reconcile,
)

NOW = datetime(2026, 11, 1, 12, 0, 0)
POLICY = PlanPolicy(org="acme", domains=("acme.com",), grace_days=30, transfer_to="it@acme.com")


def person(email: str, *groups: str, source: str = "hr", active: bool = True, **attributes: str) -> ObservedIdentity:
    return ObservedIdentity(
        source=source,
        key=f"{source}-{email}",
        match_key=email.lower(),
        user_name=email.split("@")[0],
        email=email,
        display_name=email.split("@")[0].title(),
        active=active,
        attributes=attributes,
        groups=frozenset(groups),
    )


def group(key: str, name: str | None = None, *nested: str, source: str = "hr", external_id: str | None = None):
    return ObservedGroup(
        source=source, key=key, display_name=name or key, external_id=external_id, member_groups=frozenset(nested)
    )


def observed(identities, groups=(), precedence=None) -> Observed:
    return Observed(tuple(identities), tuple(groups), precedence or {"hr": 10, "scim:acme": 0})


def empty() -> Current:
    return Current({}, {}, 0)


def advance(current: Current, plan: Plan, now: datetime = NOW) -> Current:
    """What applying ``plan`` makes of ``current``: the same transitions the store's apply performs."""
    members = dict(current.members)
    teams = dict(current.teams)
    for action in plan.actions:
        if action.action == "team.create":
            teams[action.after["slug"]] = action.after["parent"]
            continue
        key = action.target.removeprefix("member:")
        state = MemberState.from_dict(action.after)
        before = members.get(key)
        suspended_at = before.suspended_at if before else None
        if action.action == "member.suspend":
            suspended_at = now
        elif action.action == "member.reactivate":
            suspended_at = None
        members[key] = CurrentMember(key, state, suspended_at)
    owners = sum(1 for m in members.values() if m.state.status == "active" and m.state.role == "owner")
    return Current(members, teams, owners)


def plan(obs: Observed, rules=(), current: Current | None = None, now: datetime = NOW, policy: PlanPolicy = POLICY):
    current = current or empty()
    overrides = {k: m.state.role for k, m in current.members.items() if m.state.pinned}
    return reconcile(obs, list(rules), overrides, current, policy, now)


__all__ = ["NOW", "POLICY", "Rule", "advance", "empty", "group", "observed", "person", "plan"]
