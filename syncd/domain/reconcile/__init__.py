"""The reconciler: a pure planner from what sources observe to what the org should be.

Does not touch the store, the network or the clock (docs/architecture.md, "Data flow" and "Layers").
"""

from syncd.domain.reconcile.model import (
    ROLE_RANK,
    Action,
    Current,
    CurrentMember,
    MemberState,
    Observed,
    ObservedGroup,
    ObservedIdentity,
    Plan,
    PlanPolicy,
)
from syncd.domain.reconcile.planner import OrgPlanner, reconcile
from syncd.domain.reconcile.rules import RuleLike, team_slug

__all__ = [
    "ROLE_RANK",
    "Action",
    "Current",
    "CurrentMember",
    "MemberState",
    "Observed",
    "ObservedGroup",
    "ObservedIdentity",
    "OrgPlanner",
    "Plan",
    "PlanPolicy",
    "RuleLike",
    "reconcile",
    "team_slug",
]
