"""The reconciler: (observed sources, rules, overrides, current org state, policy, now) → a plan.

A pure function (docs/architecture.md, "Layers"): no store, no clock, no network. Every action carries
the member's full state before and after and a reason, so the plan reads as plain lines and applies as ledger
entries one for one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from syncd.domain.matching import email_shaped
from syncd.domain.reconcile.model import (
    ROLE_RANK,
    TEAM_ROLE_RANK,
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
from syncd.domain.reconcile.rules import Grant, RuleBook, RuleLike


def reconcile(
    observed: Observed,
    rules: Sequence[RuleLike],
    overrides: Mapping[str, str],
    current: Current,
    policy: PlanPolicy,
    now: datetime,
) -> Plan:
    """Plan the changes that make the org's members agree with what its sources observe.

    Members in scope are those with an observed identity or a current row. ``overrides`` maps a match key to the
    role an admin pinned. The org keeps at least one active owner whatever the sources say.
    """
    planner = OrgPlanner(rules, observed.groups, observed.precedence, current.teams, current.active_owners, policy, now)
    plan = planner.chunk(observed.identities, overrides, current.members)
    return Plan(plan.actions, planner.cycles + plan.notes)


class OrgPlanner:
    """An org's plan made member chunk by member chunk (docs/architecture.md, "Memory of a whole-org plan").

    What is org-wide is made once or carried from one chunk to the next: the rules matched against every group,
    the teams that exist or an earlier chunk creates, and the count of active owners. Chunks given in match key
    order, the org's active owners in the last ones, plan exactly what one :func:`reconcile` over all of them plans:
    the same member actions, the same ``team.create`` actions in the same order (each in the chunk that first needs
    the team) and the same notes (:attr:`cycles` first).
    """

    def __init__(
        self,
        rules: Sequence[RuleLike],
        groups: Iterable[ObservedGroup],
        precedence: Mapping[str, int],
        teams: Mapping[str, str | None],
        active_owners: int,
        policy: PlanPolicy,
        now: datetime,
    ) -> None:
        self.book = RuleBook(rules, groups)
        self.cycles: tuple[str, ...] = tuple(self.book.cycles)
        self.precedence, self.policy, self.now = precedence, policy, now
        self.teams: dict[str, str | None] = dict(teams)
        self.owners = active_owners
        self.overrides: Mapping[str, str] = {}
        self.members: Mapping[str, CurrentMember] = {}
        self.team_actions: list[Action] = []
        self.actions: list[Action] = []
        self.notes: list[str] = []
        # One string object per distinct summary and reason: a first sync of a million people repeats a handful.
        self.share = {}.setdefault

    def chunk(
        self,
        identities: Iterable[ObservedIdentity],
        overrides: Mapping[str, str],
        members: Mapping[str, CurrentMember],
    ) -> Plan:
        """Plan the members these identities and current members make up: ``team.create`` actions first, then
        member actions by match key; the notes of these members (not :attr:`cycles`)."""
        self.overrides, self.members = overrides, members
        self.team_actions, self.actions, self.notes = [], [], []
        # A member's one identity as itself, a list only for members several identities match: most have one, and
        # a list per member of a million-person org is a hundred megabytes.
        by_member: dict[str, ObservedIdentity | list[ObservedIdentity]] = {}
        for identity in identities:
            have = by_member.setdefault(identity.match_key, identity)
            if isinstance(have, list):
                have.append(identity)
            elif have is not identity:
                by_member[identity.match_key] = [have, identity]
        # Active owners go last, so that an owner gained anywhere in this plan counts before any owner may go
        # (the order of sorting by (is owner, key), without a key tuple per member).
        keys = sorted(by_member.keys() | members.keys())
        owners = [key for key in keys if self._is_owner(key)]
        if owners:
            keys = [key for key in keys if not self._is_owner(key)] + owners
        for key in keys:
            found = by_member.get(key)
            found_list = [] if found is None else found if isinstance(found, list) else [found]
            self._member(key, found_list, members.get(key))
        self.actions.sort(key=lambda action: action.target)
        plan = Plan(tuple(self.team_actions + self.actions), tuple(self.notes))
        self.overrides, self.members, self.team_actions, self.actions, self.notes = {}, {}, [], [], []
        return plan

    def _is_owner(self, key: str) -> bool:
        member = self.members.get(key)
        return member is not None and member.state.status == "active" and member.state.role == "owner"

    def _precedence(self, identity: ObservedIdentity) -> tuple[int, int, str, str]:
        # Highest precedence first; an active identity beats a disabled one; then by name for determinism.
        return (-self.precedence.get(identity.source, 0), not identity.active, identity.source, identity.key)

    def _member(self, key: str, identities: list[ObservedIdentity], current: CurrentMember | None) -> None:
        asserting = [i for i in identities if i.active]
        top = min(identities, key=self._precedence) if identities else None
        if current is None:
            if asserting and top is not None:
                self._join(key, top, asserting)
            return
        state = current.state
        emit = _Emitter(self, key)
        if top is not None:
            attrs = (top.email, top.user_name, top.display_name, top.manager)
            if attrs != (state.email, state.user_name, state.display_name, state.manager):
                changed = [
                    f"{label} {old!r} -> {new!r}"
                    for label, old, new in zip(
                        ("email", "user name", "display name", "manager"),
                        (state.email, state.user_name, state.display_name, state.manager),
                        attrs,
                        strict=True,
                    )
                    if old != new
                ]
                state = emit(
                    "member.update",
                    replace(
                        state,
                        email=top.email,
                        user_name=top.user_name,
                        display_name=top.display_name,
                        manager=top.manager,
                    ),
                    "; ".join(changed),
                    f"attributes from source {top.source}",
                    state,
                )
        if asserting:
            self._asserted(key, state, asserting, emit)
        else:
            self._unasserted(state, identities, current, emit)

    def _join(self, key: str, top: ObservedIdentity, asserting: list[ObservedIdentity]) -> None:
        grants = [g for identity in asserting for g in self.book.grants(identity)]
        role, role_reason = self._role(key, top, grants)
        teams = self._teams(grants)
        for slug, (_, _, grant) in teams.items():
            self._ensure_team(slug, grant)
        state = MemberState(
            email=top.email,
            user_name=top.user_name,
            display_name=top.display_name,
            status="active",
            role=role,
            pinned=False,
            teams=tuple(sorted((slug, team_role) for slug, (team_role, _, _) in teams.items())),
            manager=top.manager,
        )
        in_teams = ", ".join(f"{slug} ({team_role})" for slug, team_role in state.teams)
        sources = ", ".join(sorted({i.source for i in asserting}))
        summary = f"joins as {role}" + (f", teams {in_teams}" if in_teams else "")
        reasons = [f"asserted by source {sources}", f"role: {role_reason}"]
        reasons += [f"team {slug}: {reason}" for slug, (_, reason, _) in sorted(teams.items())]
        reason = "; ".join(reasons)
        self.actions.append(
            Action(
                "member.join",
                f"member:{key}",
                _who(key, state),
                self.share(summary, summary),
                self.share(reason, reason),
                None,
                state.as_dict(),
                NO_DETAILS,
            )
        )
        if role == "owner":
            self.owners += 1

    def _asserted(self, key: str, state: MemberState, asserting: list[ObservedIdentity], emit: _Emitter) -> None:
        if state.status != "active":
            sources = ", ".join(sorted({i.source for i in asserting}))
            state = emit(
                "member.reactivate",
                replace(state, status="active"),
                f"{state.status} -> active",
                f"asserted again by source {sources}",
                state,
            )
            if state.role == "owner":
                self.owners += 1
        grants = [g for identity in asserting for g in self.book.grants(identity)]
        top = min(asserting, key=self._precedence)
        role, reason = self._role(key, top, grants)
        if role != state.role:
            if state.role == "owner" and self.owners <= 1:
                self.notes.append(f"{_who(key, state)}: stays owner (the last owner is never demoted)")
            else:
                self.owners += (role == "owner") - (state.role == "owner")
                state = emit("member.role", replace(state, role=role), f"{state.role} -> {role}", reason, state)
        wanted = self._teams(grants)
        have = dict(state.teams)
        for slug in sorted(set(have) - set(wanted)):
            teams = tuple(t for t in state.teams if t[0] != slug)
            state = emit(
                "team.leave",
                replace(state, teams=teams),
                f"leaves team {slug}",
                f"no rule puts them in team {slug} any more",
                state,
            )
        for slug, (team_role, reason, grant) in sorted(wanted.items()):
            if have.get(slug) == team_role:
                continue
            self._ensure_team(slug, grant)
            teams = tuple(sorted([t for t in state.teams if t[0] != slug] + [(slug, team_role)]))
            if slug in have:
                summary, action = f"team {slug}: {have[slug]} -> {team_role}", "team.role"
            else:
                summary, action = f"joins team {slug} as {team_role}", "team.join"
            state = emit(action, replace(state, teams=teams), summary, reason, state)

    def _unasserted(
        self, state: MemberState, identities: list[ObservedIdentity], current: CurrentMember, emit: _Emitter
    ) -> None:
        if state.status == "active":
            if state.role == "owner" and self.owners <= 1:
                self.notes.append(f"{emit.who(state)}: stays active (the last owner is never suspended)")
                return
            if identities:
                disabled = ", ".join(sorted({i.source for i in identities}))
                reason = f"disabled in source {disabled}"
            else:
                reason = "no source asserts them any more"
            if state.role == "owner":
                self.owners -= 1
            emit("member.suspend", replace(state, status="suspended"), "active -> suspended", reason, state)
        elif state.status == "suspended":
            since = current.suspended_at
            if since is None or self.now < since + timedelta(days=self.policy.grace_days):
                return
            details = {"transfer_to": self.policy.transfer_to} if self.policy.transfer_to else {}
            transfer = f"; data transferred to {self.policy.transfer_to}" if self.policy.transfer_to else ""
            emit(
                "member.deprovision",
                replace(state, status="deprovisioned", teams=()),
                "suspended -> deprovisioned",
                f"suspended since {since:%Y-%m-%d}, grace of {self.policy.grace_days} days is over{transfer}",
                state,
                details,
            )

    def _role(self, key: str, top: ObservedIdentity, grants: list[Grant]) -> tuple[str, str]:
        pinned = self.overrides.get(key)
        if pinned is not None:
            return pinned, "pinned by an admin"
        best: Grant | None = None
        for grant in grants:
            if grant.role is None:
                continue
            if best is None or (ROLE_RANK[grant.role], -grant.rule) > (ROLE_RANK[best.role or "guest"], -best.rule):
                best = grant
        if best is not None and best.role is not None:
            return best.role, best.reason
        address = top.email or (top.user_name if email_shaped(top.user_name) else "")
        domain = address.rpartition("@")[2].lower()
        if self.policy.domains and domain not in self.policy.domains:
            shown = domain or "(no email)"
            return "guest", f"email domain {shown} is outside the org's domains"
        return self.policy.default_role, "default role"

    @staticmethod
    def _teams(grants: list[Grant]) -> dict[str, tuple[str, str, Grant]]:
        """Team slug → (highest team role, reason, the granting rule)."""
        teams: dict[str, tuple[str, str, Grant]] = {}
        for grant in sorted(grants, key=lambda g: g.rule):
            if grant.team is None:
                continue
            have = teams.get(grant.team)
            if have is None or TEAM_ROLE_RANK[grant.team_role] > TEAM_ROLE_RANK[have[0]]:
                teams[grant.team] = (grant.team_role, grant.reason, grant)
        return teams

    def _ensure_team(self, slug: str, grant: Grant) -> None:
        if slug in self.teams:
            return
        if grant.parent is not None and grant.parent != slug and grant.parent not in self.teams:
            self.teams[grant.parent] = None
            self.team_actions.append(
                Action(
                    "team.create",
                    f"team:{grant.parent}",
                    None,
                    "created",
                    f"parent of team {slug}, rule {grant.rule}",
                    None,
                    {"slug": grant.parent, "name": grant.parent, "parent": None},
                )
            )
        parent = grant.parent if grant.parent != slug else None
        self.teams[slug] = parent
        under = f" under {parent}" if parent else ""
        self.team_actions.append(
            Action(
                "team.create",
                f"team:{slug}",
                None,
                f"created{under}",
                f"rule {grant.rule} names it",
                None,
                {"slug": slug, "name": grant.team_name or slug, "parent": parent},
            )
        )


NO_DETAILS: Mapping[str, object] = {}
"""The details of every action that has none: one empty mapping that nothing writes to (a read-only proxy would
not pickle, and a run's result crosses a pipe from its worker), not a new dict per action."""


def _who(key: str, state: MemberState) -> str:
    return state.email or state.user_name or key


class _Emitter:
    """Appends one member action and returns the state after it, so a member's actions chain before → after."""

    def __init__(self, planner: OrgPlanner, key: str) -> None:
        self.planner, self.key = planner, key

    def who(self, state: MemberState) -> str:
        return _who(self.key, state)

    def __call__(
        self,
        action: str,
        after: MemberState,
        summary: str,
        reason: str,
        before: MemberState,
        details: Mapping[str, object] | None = None,
    ) -> MemberState:
        share = self.planner.share
        self.planner.actions.append(
            Action(
                action,
                f"member:{self.key}",
                _who(self.key, after),
                share(summary, summary),
                share(reason, reason),
                before.as_dict(),
                after.as_dict(),
                dict(details) if details else NO_DETAILS,
            )
        )
        return after
