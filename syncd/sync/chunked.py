"""A whole-org plan made in member chunks, so that its memory does not grow with the org (docs/architecture.md,
"Memory of a whole-org plan").

Planned twice: :meth:`ChunkedPlan.survey` plans every chunk in match key order and keeps only what the guard
judges the whole plan by (removals, the active count), the action count, the ``team.create`` actions, the notes, the
first :data:`SHOWN_ACTIONS` actions and which members the plan changes; once the plan is accepted,
:meth:`ChunkedPlan.next` plans those members again batch by batch as the batches are applied, from the same start,
so that each batch's actions are the ones the survey counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from syncd.domain.reconcile import Action, Current, Observed, OrgPlanner, Plan, RuleLike
from syncd.store.models import Organization
from syncd.sync.gather import Inputs, OrgView, gather, gather_chunk, group_keys, org_view, unmatched

CHUNK_MEMBERS = 5000
"""Members the survey gathers and plans at a time: their identities, current state and actions are what it holds."""

SHOWN_ACTIONS = 10_000
"""Actions an applied chunked plan keeps for its caller to show (``syncd sync``); the count is always whole."""

Screen = Callable[[Organization, Sequence[RuleLike], Inputs, datetime], Plan]
"""A narrow re-plan of some members from the store (the pipeline's planner), for batches after another writer."""


@dataclass
class Survey:
    """What the survey kept of the whole plan."""

    actions: int = 0
    removals: int = 0
    team_actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shown: list[Action] = field(default_factory=list)

    def plan(self) -> Plan:
        """The plan to show: its ``team.create`` actions and first member actions, and every note."""
        return Plan(tuple(self.shown), tuple(self.notes))


def plan_chunk(planner: OrgPlanner, inputs: Inputs) -> Plan:
    """One chunk's plan, carrying the planner's teams and owner count on to the next chunk."""
    return planner.chunk(inputs.observed.identities, inputs.overrides, inputs.current.members)


def _changed(plan: Plan) -> set[str]:
    """The match keys of the members this plan changes."""
    return {a.target.removeprefix("member:") for a in plan.actions if a.target.startswith("member:")}


class ChunkedPlan:
    """An org's whole plan, surveyed chunk by chunk, then planned again and handed out batch by batch.

    The survey marks the members its plan changes (a byte per match key), before the SCIM held plan's removals are
    withheld: the batches plan only those again, in the same order. A member the plan leaves alone moves neither
    the owner count nor the teams (only a member's actions do), so the carried state is the survey's at each one.
    """

    def __init__(
        self,
        org: Organization,
        rules: Sequence[RuleLike],
        now: datetime,
        withhold: Callable[[Plan], Plan],
        replan: Screen,
    ) -> None:
        self.org, self.rules, self.now, self.withhold, self.replan = org, rules, now, withhold, replan
        self.view: OrgView = org_view(org, rules)
        self.changed = bytearray(len(self.view.keys))
        self.left = 0
        self.position = 0
        self._teams: dict[str, str | None] = dict(self.view.teams)
        self._planner: OrgPlanner | None = None
        self._team_actions: list[Action] = []

    @property
    def active(self) -> int:
        """The org's active members, as the guard counts them."""
        return self.view.active

    def _new_planner(self, teams: dict[str, str | None]) -> OrgPlanner:
        view = self.view
        return OrgPlanner(self.rules, view.groups, view.precedence, teams, view.active_owners, view.policy, self.now)

    def survey(self) -> Survey:
        """Plan every chunk, keeping only counts, team creations, notes, the first actions and which members change."""
        survey = Survey()
        planner = self._new_planner(self.view.teams)
        survey.notes.extend(planner.cycles)
        members: list[Action] = []
        for start in range(0, len(self.view.keys), CHUNK_MEMBERS):
            keys = self.view.keys[start : start + CHUNK_MEMBERS]
            plan = plan_chunk(planner, gather_chunk(self.org, self.view, keys))
            changed = _changed(plan)
            for offset, key in enumerate(keys):
                if key in changed:
                    self.changed[start + offset] = 1
            self.left += len(changed)
            plan = self.withhold(plan)
            survey.actions += len(plan.actions)
            survey.removals += plan.removals
            survey.notes.extend(plan.notes)
            for action in plan.actions:
                if action.action == "team.create":
                    survey.team_actions.append(action)
                elif len(members) < SHOWN_ACTIONS:
                    members.append(action)
        survey.notes.extend(identity.note(self.org.match_on) for identity in unmatched(self.org))
        survey.shown = survey.team_actions + members
        # The batches plan with every team the plan has, so that none is created twice: the first batch creates them.
        self._teams, self._team_actions = dict(planner.teams), list(survey.team_actions)
        return survey

    def __bool__(self) -> bool:
        """Members left to hand out."""
        return self.left > 0

    def batches_left(self, limit: int) -> int:
        """Batches of ``limit`` members left."""
        return -(-self.left // limit)

    def _next_keys(self, limit: int) -> list[str]:
        keys: list[str] = []
        while len(keys) < limit and self.left:
            if self.changed[self.position]:
                keys.append(self.view.keys[self.position])
                self.left -= 1
            self.position += 1
        return keys

    def next(self, fresh: bool, limit: int) -> tuple[Inputs, Plan]:
        """The next batch: the next ``limit`` members the plan changes, in plan order, after every ``team.create``
        in the first. ``fresh``: no other writer has committed since the plan began, so the carried teams and
        owner count still hold; otherwise these members are planned from the store alone, as any narrow plan is."""
        keys = self._next_keys(limit)
        if not fresh:
            self._planner = None
            inputs = gather(self.org, self.rules, keys)
            return inputs, self.replan(self.org, self.rules, inputs, self.now)
        if self._planner is None:
            self._planner = self._new_planner(self._teams)
            # Group ids as stored now: the survey may have read the groups of a read staged apart, whose new groups
            # are stored under other ids.
            self.view.group_key = group_keys(self.org)
        inputs = gather_chunk(self.org, self.view, keys)
        plan = self.withhold(plan_chunk(self._planner, inputs))
        actions, self._team_actions = [*self._team_actions, *plan.actions], []
        batch = Inputs(
            observed=Observed((), (), self.view.precedence),
            overrides={},
            current=Current({}, {}, 0),
            policy=self.view.policy,
            members=inputs.members,
            teams=inputs.teams,
            active=self.view.active,
        )
        return batch, Plan(tuple(actions))
