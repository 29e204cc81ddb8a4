"""The planner's inputs and outputs: plain values, so the plan is a pure function of them (docs/architecture.md).

Inputs describe what every source of one org observes (identities, groups, nesting), what the org holds now
(members, their teams, existing teams) and its policy. The output is a :class:`Plan`: an ordered list of
:class:`Action` values, each one future ledger entry with the member's full state before and after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLE_RANK = {"guest": 0, "member": 1, "team_admin": 2, "admin": 3, "owner": 4}
"""Org roles, lowest to highest: the highest role any rule grants wins."""

TEAM_ROLE_RANK = {"member": 0, "maintainer": 1}


@dataclass(frozen=True, slots=True)
class ObservedIdentity:
    """A person as one source sees them; ``groups`` holds the keys of the source's groups they are directly in."""

    source: str
    key: str
    match_key: str
    user_name: str
    email: str | None = None
    display_name: str | None = None
    active: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    manager: str | None = None
    """The email of the person's manager, as this source names them (RFC 7643 §4.3 ``manager``), if known."""


@dataclass(frozen=True, slots=True)
class ObservedGroup:
    """A directory group of one source; ``member_groups`` holds the keys of groups nested directly inside it."""

    source: str
    key: str
    display_name: str
    external_id: str | None = None
    member_groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Observed:
    """What the org's sources say: identities (all, or those of the members being planned), every relevant group,
    and each source's precedence (higher wins attribute conflicts)."""

    identities: tuple[ObservedIdentity, ...]
    groups: tuple[ObservedGroup, ...]
    precedence: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MemberState:
    """A member as the ledger records them (docs/architecture.md, "The model"): teams is a sorted tuple of (team slug,
    role)."""

    email: str | None
    user_name: str | None
    display_name: str | None
    status: str = "active"
    role: str = "member"
    pinned: bool = False
    teams: tuple[tuple[str, str], ...] = ()
    manager: str | None = None

    def as_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "email": self.email,
            "user_name": self.user_name,
            "display_name": self.display_name,
            "status": self.status,
            "role": self.role,
            "pinned": self.pinned,
            "teams": [{"team": team, "role": role} for team, role in self.teams],
        }
        if self.manager is not None:  # only when known: ledger entries of people without one stay as they were
            state["manager"] = self.manager
        return state

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> MemberState:
        return cls(
            email=value["email"],
            user_name=value["user_name"],
            display_name=value["display_name"],
            status=value["status"],
            role=value["role"],
            pinned=bool(value["pinned"]),
            teams=tuple(sorted((t["team"], t["role"]) for t in value["teams"])),
            manager=value.get("manager"),
        )


@dataclass(frozen=True, slots=True)
class CurrentMember:
    """A member as the org holds them now, with when their suspension started (for the grace period)."""

    match_key: str
    state: MemberState
    suspended_at: Any = None


@dataclass(frozen=True, slots=True)
class Current:
    """The org's present state: members in scope, every existing team (slug → parent slug) and the org-wide count
    of active owners (so that planning a few members still protects the last owner)."""

    members: Mapping[str, CurrentMember]
    teams: Mapping[str, str | None]
    active_owners: int


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """The org's policy as the planner needs it."""

    org: str
    domains: tuple[str, ...] = ()
    grace_days: int = 30
    default_role: str = "member"
    transfer_to: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One change: a future ledger entry. ``before``/``after`` are full member states (``before`` is None on join)
    or, for ``team.create``, the team. ``summary`` says what changes, ``reason`` why."""

    action: str
    target: str
    member: str | None
    summary: str
    reason: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    details: Mapping[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The plan's text line: who, what and why."""
        who = self.member or self.target.replace(":", " ", 1)
        return f"{who}: {self.summary} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "target": self.target,
            "action": self.action,
            "summary": self.summary,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            **({"details": dict(self.details)} if self.details else {}),
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Action:
        return cls(
            action=value["action"],
            target=value["target"],
            member=value["member"],
            summary=value["summary"],
            reason=value["reason"],
            before=value["before"],
            after=value["after"],
            details=value.get("details", {}),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What to change, in order: team creations first, then each member's changes (by match key)."""

    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()

    @property
    def removals(self) -> int:
        """Suspensions and deprovisions together: what the guard counts."""
        return sum(1 for a in self.actions if a.action in ("member.suspend", "member.deprovision"))

    def __bool__(self) -> bool:
        return bool(self.actions)
