"""One source run, end to end: read → stage → plan → guard → apply (docs/architecture.md, "Data flow").

This module is the shell's entry point for source runs (CLI ``syncd sync``, the scheduler, the admin API) and for
SCIM writes (:func:`reconcile_touched`, called inside the SCIM write transaction). Stage, plan, apply, ledger,
outbox and the new cursor share one transaction (invariant 2); a plan of more than :data:`BATCH_MEMBERS` members
applies in batches, each its own transaction, and the cursor moves with the last (docs/architecture.md,
"Batches", "Staged apart"). On SQLite a run stages, plans and judges apart, in TEMP tables under a read
transaction, and moves its staged rows into the store in bounded transactions before the batches. A held plan
leaves the stored rows as they were, so the store never holds staged data the org has not accepted; ``syncd
approve`` reads the source again from the same cursor.

``SYNCD_FAULT`` (``stage``, ``plan``, ``apply``, ``move``, ``moved``, ``batch``, ``commit``, ``committed``) kills
the process with SIGKILL at that step (``move``: before each move after the first; ``moved``: after the last;
``batch``: before each batch after the first): the crash tests use it to prove a kill at any step loses and doubles
nothing.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connectors.interface import Connector, ReadResult
from syncd.clock import utcnow
from syncd.common.errors import ConnectorError
from syncd.config import Config, Rule, SourceSettings
from syncd.domain.reconcile import Action, Current, Observed, Plan, reconcile
from syncd.logs import log_event
from syncd.store import dialect, sql
from syncd.store.models import Organization, PlanBasis, Source, Team
from syncd.store.models import Plan as PlanRow
from syncd.store.staging_area import StagingArea
from syncd.store.tx import write_transaction
from syncd.sync import chunked, guard, held, orgs, source_runs
from syncd.sync.apply import apply_plan
from syncd.sync.gather import Inputs, active_owners, basis, due_for_deprovision, gather, planned_columns, unmatched
from syncd.sync.ledger import lock_org
from syncd.sync.stage import StageResult, rekey, stage, touched_match_keys

log = logging.getLogger("syncd.pipeline")
Progress = Callable[[str, int, int | None], None]
"""``progress(phase, done, total)``: the CLI shows it on a TTY; everything else passes None."""


class PipelineError(Exception):
    """A run or an approval cannot proceed; the message names the source or plan and what to do."""


@dataclass
class RunResult:
    """What a source run did. ``held`` means the guard stopped the plan; ``complete`` mirrors the read."""

    source: str
    org: str
    plan_id: str | None = None
    actions: int = 0
    applied: bool = False
    held: bool = False
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    plan: Plan | None = None
    held_reason: str | None = None
    stale: bool = False
    stage: StageResult | None = None

    def record(self, decision: Decision) -> None:
        """Note what the core decided: the plan, its size and the guard's reason (``held`` already on a dry run)."""
        self.plan, self.actions, self.held_reason = decision.plan, decision.count, decision.held_reason
        self.held = decision.held_reason is not None


def org_rules(config: Config, slug: str) -> tuple[Rule, ...]:
    """The org's mapping rules in ``config`` (none for an org created by ``syncd orgs create`` and not declared).

    Always an argument, never a module global: a SCIM write, a run and an approval each plan with the config the
    caller holds, so a reload (SIGHUP) reaches every later write and run (docs/architecture.md, "Config").
    """
    for org in config.orgs:
        if org.slug == slug:
            return org.rules
    return ()


def connector_for(settings: SourceSettings) -> Connector:
    """``connectors.<kind>.Connector(name, settings)`` for a configured source (docs/architecture.md, "Contracts")."""
    module = importlib.import_module(f"connectors.{settings.kind}")
    return module.Connector(settings.name, settings.connector)


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one large run.

    A 100,000-person run allocates millions of small acyclic objects (rows, records, tuples); each burst of
    allocations triggers generation scans that find nothing to free. Reference counting still frees them; cycles
    wait until the last concurrent run ends and the collector resumes as it was.
    """
    global _gc_pauses, _gc_resume
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()


def _organization(org_id: int) -> Organization:
    """The org row by id, through a statement composed once (a SCIM write reads it on every request)."""
    fields = Organization._meta.sorted_fields
    found = sql.rows("org by id", lambda: Organization.select(*fields).where(Organization.id == org_id), [org_id])
    if not found:
        raise PipelineError(f"org id {org_id}: no such org; it may have been deleted while the request ran")
    return Organization(**{f.name: f.python_value(v) for f, v in zip(fields, found[0], strict=True)})


def _fault(step: str) -> None:
    if os.environ.get("SYNCD_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


@gc_paused()
def run_source(
    config: Config,
    source_name: str,
    *,
    dry_run: bool = False,
    full: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Read the named source and apply what it says, in one transaction with its new cursor."""
    settings = config.source(source_name)
    now = now or utcnow()
    row = _source_row(source_name)
    cursor = row.cursor
    asked_full = full
    if (
        full
        or cursor is None
        or source_runs.full_due(row, settings.full_snapshot_every, now, f"source {source_name}.full_snapshot_every")
    ):
        cursor, full = None, True
    try:
        connector = connector_for(settings)
        if progress:
            progress("reading", 0, None)
        # A connector whose every read is whole (a file) compares each read with the last complete one through the
        # cursor: only an explicit --full reads without that comparison, not the periodic full read.
        whole_always = getattr(connector, "every_read_is_whole", False)
        # A connector that can stream its snapshot is staged record by record (connectors/interface.py).
        read = getattr(connector, "stream", connector.read)
        result = read(row.cursor if whole_always and not asked_full else cursor)
    except ConnectorError as error:
        if not dry_run:
            source_runs.failed(row, str(error), now)
        raise
    except Exception as error:
        message = f"source {source_name}: read failed ({type(error).__name__}); see the service log"
        if not dry_run:
            source_runs.failed(row, message, now)
        raise PipelineError(message) from error
    return apply_read(
        config,
        source_name,
        result,
        read_cursor=cursor,
        full=full,
        dry_run=dry_run,
        actor=actor,
        now=now,
        progress=progress,
    )


@gc_paused()
def apply_read(
    config: Config,
    source_name: str,
    result: ReadResult,
    *,
    read_cursor: str | None = None,
    full: bool = False,
    dry_run: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Stage a read of the source, plan the org, guard, apply, move the cursor.

    Where the dialect gives a staging area (SQLite), the read is staged, planned and judged there without the write
    lock, then moved into the stored rows and applied in bounded transactions (:func:`_apply_read_apart`).
    Otherwise one transaction when the plan fits one batch; else the first transaction holds the stage and the
    first batch, each further batch its own, and the cursor moves with the last (docs/architecture.md, "Batches").
    ``read_cursor`` is the cursor the read started from (None for a full read); a held plan keeps it so that
    ``syncd approve`` can read the same changes again.
    """
    now = now or utcnow()
    row = _source_row(source_name)
    org = Organization.get_by_id(row.org_id)
    rules = org_rules(config, org.slug)
    actor = actor or f"source:{source_name}"
    outcome = RunResult(source=source_name, org=org.slug)
    area = dialect.of().staging_area(org.id, row.id)
    try:
        if area is not None:
            decision, staged = _apply_read_apart(
                area, org, row, rules, result, now, outcome, full=full, dry_run=dry_run, actor=actor, progress=progress
            )
        else:
            with write_transaction() as tx:
                lock_org(org.id)
                staged = _stage(org, row, result, now, outcome, progress)
                decision = _decide_read(
                    org, row, rules, staged, now, full=full, dry_run=dry_run, actor=actor, progress=progress
                )
                outcome.record(decision)
                if dry_run or decision.held_reason is not None:
                    tx.rollback()
                else:
                    _fault("apply")
                    _finish(decision, now, lambda: source_runs.advanced(row, result, staged, now))
            _apply_rest(decision, now, lambda: source_runs.advanced(row, result, staged, now))
    except Exception as error:
        if not isinstance(error, PipelineError) and not dry_run:
            message = f"source {source_name}: run failed ({type(error).__name__}); see the service log"
            source_runs.failed(row, message, now)
        raise
    if dry_run:
        return outcome
    if decision.held_reason is not None:
        return _hold(org, row, decision, outcome, read_cursor, full, actor, now)
    _fault("committed")
    _log_unmatched(org, source_name, staged)
    outcome.applied, outcome.actions = True, decision.applied
    return outcome


Judge = Callable[["Decision"], str | None]
"""Why a plan must not be applied (None: apply it): the guard for runs, "still the held plan" for approvals."""
Planner = Callable[[Organization, Sequence[Rule], Inputs, datetime], Plan]
"""Inputs → the plan to apply: :func:`_decide` for runs; an approval of SCIM removals narrows it to them."""


@dataclass
class Decision:
    """What :func:`_plan_guard_apply` decided: the plan and its inputs, the reason not to apply it (None: applied,
    or applying), the fingerprint a held plan is kept under, how many actions were applied so far, and the
    batches left for later (:func:`_apply_rest` applies them). ``total`` is the plan's action count when ``plan``
    holds only the first actions (a plan made in chunks)."""

    @property
    def count(self) -> int:
        return len(self.plan.actions) if self.total is None else self.total

    org: Organization
    rules: Sequence[Rule]
    inputs: Inputs
    plan: Plan
    held_reason: str | None
    actor: str = ""
    fingerprint: str | None = None
    applied: int = 0
    rest: LaterBatches | None = None
    total: int | None = None
    quiet_marker: int | None = None
    planner: Planner | None = None
    settle_basis: Callable[[], None] | None = None
    progress: Progress | None = None
    scope: set[str] | None = None
    stored_basis: PlanBasis | None = None


def guard_judge(org: Organization) -> Judge:
    """The guard's verdict over a whole plan (:func:`syncd.sync.guard.verdict`)."""
    return lambda decision: guard.verdict(decision.plan, decision.inputs.active, orgs.policy_of(org))


def _plan_guard_apply(
    org: Organization,
    rules: Sequence[Rule],
    now: datetime,
    *,
    scope: set[str] | None,
    actor: str,
    judge: Judge | None = None,
    planner: Planner | None = None,
    accepted: Callable[[Decision], None] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    stored_basis: PlanBasis | None = None,
    apply_first: bool = True,
) -> Decision:
    """The one core of a source run, a whole-org re-plan and an approval, inside the caller's transaction: plan the
    members in ``scope`` (None: the whole org), judge the WHOLE plan (default: the guard), then, unless judged or a
    dry run, call ``accepted`` and (``apply_first``) apply the first batch. A plan the guard holds is held as a
    whole-org plan, so that approval recomputes exactly the same thing; the caller keeps or rolls back what it wrote
    before, and holds the plan. The caller finishes with :func:`_finish`, which applies the other batches and
    records the config a whole-org plan was applied under; without ``apply_first`` (a read staged apart, judged
    in a read transaction) the caller calls :func:`_accept` and applies every batch itself. A guarded whole-org
    plan is made in member chunks (:func:`_plan_in_chunks`); dry runs, approvals and narrow plans are made at once."""
    if scope is None and judge is None and planner is None and not dry_run:
        chunked_decision = _plan_in_chunks(org, rules, now, actor, accepted, progress, stored_basis)
        if chunked_decision is not None:
            if apply_first:
                _accept(chunked_decision, now, apply_first=True)
            return chunked_decision
    planner = planner or _decide
    decision = _plan_and_judge(org, rules, now, scope, judge or guard_judge(org), planner)
    decision.actor, decision.progress, decision.planner = actor, progress, planner
    decision.scope, decision.stored_basis = scope, stored_basis
    _fault("plan")
    if dry_run:
        return decision
    if decision.held_reason is not None:
        decision.fingerprint = guard.fingerprint(decision.inputs, rules)
        return decision
    if accepted is not None:
        accepted(decision)
    if apply_first:
        _accept(decision, now, apply_first=True)
    return decision


def _accept(decision: Decision, now: datetime, *, apply_first: bool, spans: bool = False) -> None:
    """Cut an accepted plan into batches. ``apply_first``: apply the first one in the caller's write transaction and
    leave the rest for :func:`_apply_rest`; otherwise leave every batch to it. ``spans``: the run's changes span
    several transactions even when the plan fits one batch (a read staged apart moved in several). A run spanning
    several transactions records its config basis only with the last one (the basis is ``pending`` meanwhile)."""
    org, rules, stored_basis = decision.org, decision.rules, decision.stored_basis
    if decision.rest is None:  # a plan made at once: cut into batches of its own actions
        owners = _active_owners(decision.inputs)
        decision.inputs.release_planned()
        first, rest = _batches(decision.plan, owners)
        decision.rest = _Listed(decision, [first, *rest], now)
    if apply_first and decision.rest:
        inputs, plan = decision.rest.next(True, BATCH_MEMBERS)
        decision.applied = _apply(org, plan, inputs, decision.actor, now, decision.progress, decision.count)
    left = decision.rest.batches_left(BATCH_MEMBERS)
    several = spans or left > (0 if apply_first else 1)
    if decision.scope is None:
        # Read again when settled: a run staged apart planned without the lock, and another run may have settled.
        digest = basis(org, rules)
        decision.settle_basis = lambda: _record_basis(org, PlanBasis.get_or_none(PlanBasis.org == org.id), digest, now)
    elif several and stored_basis is not None:
        kept = stored_basis.fingerprint, stored_basis.planned_at
        decision.settle_basis = lambda: _restore_basis(stored_basis.id, *kept)
    if apply_first and left:
        _mark_pending(org)
        decision.quiet_marker = dialect.of().quiet_marker()


def _plan_in_chunks(
    org: Organization,
    rules: Sequence[Rule],
    now: datetime,
    actor: str,
    accepted: Callable[[Decision], None] | None,
    progress: Progress | None,
    stored_basis: PlanBasis | None,
) -> Decision | None:
    """A whole-org run's plan made in member chunks (:mod:`syncd.sync.chunked`): surveyed and judged by the guard
    as a whole before anything is applied; its batches are planned again as they are applied. None when the guard
    holds it: a held plan is planned whole, as it is kept and approved (its actions and fingerprint)."""
    whole = chunked.ChunkedPlan(org, rules, now, lambda plan: held.withhold(org.id, plan), _decide)
    survey = whole.survey()
    if guard.verdict_of(survey.removals, whole.active, orgs.policy_of(org)) is not None:
        return None
    _fault("plan")
    empty = Inputs(Observed((), (), {}), {}, Current({}, {}, 0), whole.view.policy, {}, {}, whole.active)
    decision = Decision(org, rules, empty, survey.plan(), None, actor, total=survey.actions, progress=progress)
    decision.planner, decision.rest, decision.stored_basis = _decide, whole, stored_basis
    if accepted is not None:
        accepted(decision)
    return decision


class LaterBatches(Protocol):
    """The batches of an accepted plan not applied yet: true while some are left."""

    def __bool__(self) -> bool: ...

    def batches_left(self, limit: int) -> int:
        """Batches of ``limit`` members left while no other writer comes in."""
        ...

    def next(self, fresh: bool, limit: int) -> tuple[Inputs, Plan]:
        """The next batch's inputs and actions: the plan's own while ``fresh`` (no other writer has committed since
        it was made), otherwise at most ``limit`` of its members planned again from the store."""
        ...


class _Listed:
    """The batches of a plan made at once: its own actions, cut by :func:`_batches`."""

    def __init__(self, decision: Decision, batches: list[list[Action]], now: datetime) -> None:
        self.decision, self.batches, self.now = decision, batches, now
        self.batches.reverse()

    def __bool__(self) -> bool:
        return bool(self.batches)

    def batches_left(self, limit: int) -> int:
        return len(self.batches)

    def next(self, fresh: bool, limit: int) -> tuple[Inputs, Plan]:
        decision, actions = self.decision, self.batches.pop()
        org, rules = decision.org, decision.rules
        if fresh:
            # No other writer since the plan was made: its actions for these members still hold; the teams an
            # earlier batch created have ids now.
            decision.inputs.teams.update(_team_ids(org))
            return decision.inputs, Plan(tuple(actions))
        # Another writer may have changed any member not applied yet: plan them again, ``limit`` at a time.
        members = list(dict.fromkeys(a.target for a in actions if a.target.startswith("member:")))
        if len(members) > limit:
            later = set(members[limit:])
            members = members[:limit]
            self.batches.append([a for a in actions if a.target in later])
        inputs = gather(org, rules, [target.removeprefix("member:") for target in members])
        return inputs, (decision.planner or _decide)(org, rules, inputs, self.now)


def _team_ids(org: Organization) -> dict[str, int]:
    """The org's teams by slug, with those the first batch created: later batches join members to them."""
    return dict(Team.select(Team.slug, Team.id).where(Team.org == org.id).tuples())


def _plan_and_judge(
    org: Organization, rules: Sequence[Rule], now: datetime, scope: set[str] | None, judge: Judge, planner: Planner
) -> Decision:
    """Plan and the judge's verdict: the members in ``scope`` (None: the whole org); a plan the judge stops is
    planned again for the whole org, as held plans are."""
    inputs, plan = _plan(org, rules, now, scope, planner)
    decision = Decision(org, rules, inputs, plan, None)
    decision.held_reason = judge(decision)
    if decision.held_reason is not None and scope is not None:
        inputs, plan = _plan(org, rules, now, None, planner)
        decision = Decision(org, rules, inputs, plan, None)
        decision.held_reason = judge(decision)
    return decision


BATCH_MEMBERS = 2000
"""Members whose changes one apply transaction writes. About 100 ms of write lock on SQLite for a first sync's
joins (docs/architecture.md, "Batches"); the tests make it small to cross batch boundaries."""


def _batches(plan: Plan, owners: set[str]) -> tuple[list[Action], list[list[Action]]]:
    """The first batch's actions (every ``team.create`` and the first members' changes) and the actions of each
    later batch, in plan order. Active owners (``owners``, by match key) go last, as the planner plans them, so that
    an owner gained in an earlier batch counts before any owner may go in a later one. Members are told apart by
    their actions' own target strings, and batches hold the plan's actions rather than a second index of them by
    member: at a million people, new key strings and that index cost more than the plan's member actions."""
    members: set[str] = set()
    first: list[Action] = []
    for action in plan.actions:
        if action.target.startswith("member:"):
            members.add(action.target)
        else:
            first.append(action)
    if len(members) <= BATCH_MEMBERS:
        return list(plan.actions), []
    targets = sorted(members)
    last = {f"member:{key}" for key in owners} & members
    if last:
        targets = [target for target in targets if target not in last] + sorted(last)
    batch_of = {target: i // BATCH_MEMBERS for i, target in enumerate(targets)}
    del targets, members
    chunks: list[list[Action]] = [[] for _ in range(max(batch_of.values()) + 1)]
    for action in plan.actions:
        if action.target.startswith("member:"):
            chunks[batch_of[action.target]].append(action)
    if last:
        for chunk in chunks:
            chunk.sort(key=lambda a: a.target in last)
    return first + chunks[0], chunks[1:]


def _active_owners(inputs: Inputs) -> set[str]:
    return {
        key
        for key, member in inputs.current.members.items()
        if member.state.status == "active" and member.state.role == "owner"
    }


def _finish(decision: Decision, now: datetime, advance: Callable[[], None]) -> None:
    """In the first transaction: when the plan fit one batch, ``advance`` (the source's cursor and run state) and
    record the config basis with it; otherwise :func:`_apply_rest` does, after the first transaction commits."""
    if not decision.rest:
        _settle(decision, advance)


def _apply_rest(
    decision: Decision, now: datetime, advance: Callable[[], None], *, first_included: bool = False
) -> None:
    """Apply the batches after the first, each its own transaction, then ``advance`` with the config basis.

    A later batch applies the plan's actions for its members while no other writer has committed since the plan
    was made (the dialect tells, on SQLite); once one has, each batch plans its members again from the store under
    the org lock, so that a SCIM write between batches is seen rather than overwritten. The guard judged the whole
    plan before the first batch. A crash between batches leaves whole batches applied, the cursor where it was and
    the org's plan basis marked pending, so that the next run plans the whole org and finishes the job
    (docs/architecture.md, invariant 2). ``first_included``: the plan's first batch is among them (a read staged
    apart), which the ``batch`` fault does not precede."""
    rest = decision.rest
    if decision.held_reason is not None or rest is None or not (rest or first_included):
        return  # held, or settled in the first transaction by :func:`_finish`
    held: float | None = None  # the transaction before held the lock for a stage and a whole plan, or a move
    number = 0
    while rest:
        if number or not first_included:
            _fault("batch")
        number += 1
        dialect.of().let_writers_in(held)
        began = time.monotonic()
        with write_transaction():
            _apply_batch(decision, now, REPLAN_MEMBERS)
        held = time.monotonic() - began
    dialect.of().let_writers_in(held)
    with write_transaction():
        lock_org(decision.org.id)
        _settle(decision, advance)


REPLAN_MEMBERS = 250
"""Members one transaction plans again and applies once another writer has committed since the plan: planning
under the lock costs several times applying, so these transactions hold fewer members than a batch."""


def _apply_batch(decision: Decision, now: datetime, replan_members: int) -> None:
    """The next batch of ``decision.rest`` in the caller's write transaction: the plan's actions for its members
    while no other writer has committed since the plan was made; once one has, ``replan_members`` of its members
    planned again from the store (planning under the lock costs several times applying)."""
    assert decision.rest is not None
    lock_org(decision.org.id)
    fresh = dialect.of().quiet_since(decision.quiet_marker)
    inputs, plan = decision.rest.next(fresh, BATCH_MEMBERS if fresh else replan_members)
    decision.applied += _apply(
        decision.org, plan, inputs, decision.actor, now, decision.progress, decision.count, decision.applied
    )
    decision.quiet_marker = dialect.of().quiet_marker() if fresh else None


def _settle(decision: Decision, advance: Callable[[], None]) -> None:
    if decision.settle_basis is not None:
        decision.settle_basis()
    advance()
    _fault("commit")


def _stage(
    org: Organization, row: Source, result: ReadResult, now: datetime, outcome: RunResult, progress: Progress | None
) -> StageResult:
    """Stage the read (what the source says, as it says it) and note it on the outcome."""
    if progress:
        progress("staging", 0, None)
    staged = stage(org, row, result, now)
    outcome.stage, outcome.complete, outcome.problems = staged, staged.complete, list(staged.problems)
    log_event(log, "source.run.staged", source=row.name, changed=staged.changed, complete=staged.complete)
    _fault("stage")
    return staged


def _decide_read(
    org: Organization,
    row: Source,
    rules: Sequence[Rule],
    staged: StageResult,
    now: datetime,
    *,
    full: bool,
    dry_run: bool,
    actor: str,
    progress: Progress | None,
    apply_first: bool = True,
) -> Decision:
    """Plan what a staged read changed: the members it touched, or the whole org after a full read or when the
    org-wide basis (rules, policy, match key, precedences) changed since the last whole-org plan."""
    if progress:
        progress("planning", 0, None)
    stored_basis = PlanBasis.get_or_none(PlanBasis.org == org.id)
    changed_basis = stored_basis is None or stored_basis.fingerprint != basis(org, rules)
    if changed_basis:
        rekey(org)
    scope = None if full or changed_basis else _scope(org, row, staged, now)
    _release_keys(staged)
    return _plan_guard_apply(
        org,
        rules,
        now,
        scope=scope,
        dry_run=dry_run,
        actor=actor,
        progress=progress,
        stored_basis=stored_basis,
        apply_first=apply_first,
    )


def _apply_read_apart(
    area: StagingArea,
    org: Organization,
    row: Source,
    rules: Sequence[Rule],
    result: ReadResult,
    now: datetime,
    outcome: RunResult,
    *,
    full: bool,
    dry_run: bool,
    actor: str,
    progress: Progress | None,
) -> tuple[Decision, StageResult]:
    """Stage, plan and judge in a read transaction over the staging area, holding no write lock; then, for an
    accepted plan, move the staged rows that differ into the stored ones a chunk of keys per transaction and apply
    the plan's batches, each its own transaction, the cursor with the last (docs/architecture.md, "Batches"). A run
    that fits three moves and one batch is one transaction. Before the first of several, the org's plan basis is marked
    pending: a crash anywhere after leaves the cursor where it was, and the next run plans the whole org."""
    if not dry_run and _basis_changed(org, rules):
        with write_transaction():  # match keys follow the org's match_on in every source's stored rows first
            lock_org(org.id)
            rekey(org)
    with area.opened():
        with area.snapshot():
            marker = dialect.of().quiet_marker()
            staged = _stage(org, row, result, now, outcome, progress)
            decision = _decide_read(
                org,
                row,
                rules,
                staged,
                now,
                full=full,
                dry_run=dry_run,
                actor=actor,
                progress=progress,
                apply_first=False,
            )
        outcome.record(decision)
        if dry_run or decision.held_reason is not None:
            return decision, staged
        _fault("apply")
        decision.quiet_marker = marker
        advance = lambda: source_runs.advanced(row, result, staged, now)  # noqa: E731
        moves = _moves(area, staged)
        _accept(decision, now, apply_first=False, spans=len(moves) > 3)
        assert decision.rest is not None
        if len(moves) <= 3 and decision.rest.batches_left(BATCH_MEMBERS) <= 1:
            with write_transaction():
                lock_org(org.id)
                for move in moves:
                    move()
                area.close()
                if decision.rest:
                    _apply_batch(decision, now, BATCH_MEMBERS)
                _settle(decision, advance)
            return decision, staged
        with write_transaction():
            lock_org(org.id)
            _mark_pending(org)
        held: float | None = None
        for number, move in enumerate(moves):
            if number:
                _fault("move")
            dialect.of().let_writers_in(held)
            began = time.monotonic()
            with write_transaction():
                move()
            held = time.monotonic() - began
        _fault("moved")
    _apply_rest(decision, now, advance, first_included=True)
    return decision, staged


def _moves(area: StagingArea, staged: StageResult) -> list[Callable[[], None]]:
    """The transactions that make the source's stored rows equal its staged ones, over the keys whose rows differ:
    none when staging changed no row (every row staging writes is counted in ``staged.changed``), so a read that
    says nothing new costs no pass over the stored rows."""
    if not staged.changed:
        return []
    return area.moves()


def _basis_changed(org: Organization, rules: Sequence[Rule]) -> bool:
    stored_basis = PlanBasis.get_or_none(PlanBasis.org == org.id)
    return stored_basis is None or stored_basis.fingerprint != basis(org, rules)


def _release_keys(staged: StageResult) -> None:
    """Drop the sets of keys the read touched once the scope is known: after a first sync of a million people they
    hold a million strings that nothing after planning reads."""
    staged.touched_keys, staged.old_match_keys, staged.new_email_keys = set(), set(), set()


def _hold(
    org: Organization,
    row: Source | None,
    decision: Decision,
    outcome: RunResult,
    read_cursor: str | None,
    full: bool,
    actor: str,
    now: datetime,
) -> RunResult:
    """Keep a plan the guard held (a ``Plan`` row, ledgered), in the caller's transaction or a new one; a source
    run's held plan keeps ``read_cursor`` so that ``syncd approve`` can read the same changes again."""
    assert decision.held_reason is not None and decision.fingerprint is not None
    with write_transaction():
        outcome.plan_id, new = guard.hold(
            org,
            row,
            decision.plan,
            decision.fingerprint,
            decision.held_reason,
            read_cursor=read_cursor,
            full=full,
            actor=actor,
            now=now,
        )
        if new and row is not None:
            source_runs.held(row, f"source {row.name}: plan {outcome.plan_id} held by the guard", now)
    outcome.held = True
    return outcome


def _log_unmatched(org: Organization, source_name: str, staged: StageResult) -> None:
    """One ``identity.unmatched`` line for the identities a committed read left without a member."""
    if not staged.newly_unmatched:
        return
    shown = ", ".join(staged.newly_unmatched[:5]) + (" ..." if len(staged.newly_unmatched) > 5 else "")
    log_event(
        log,
        "identity.unmatched",
        logging.WARNING,
        source=source_name,
        count=len(staged.newly_unmatched),
        ids=shown,
        match_on=org.match_on,
        effect="they join no member; see 'syncd sources show'",
    )


def _scope(org: Organization, row: Source, staged: StageResult, now: datetime) -> set[str]:
    """The members a read can have changed, plus those time or the last-owner rule may move."""
    keys = touched_match_keys(row, staged)
    keys.update(due_for_deprovision(org, orgs.policy_of(org).grace_days, now))
    keys.update(active_owners(org))
    return keys


def _plan(
    org: Organization, rules: Sequence[Rule], now: datetime, keys: set[str] | None, planner: Planner
) -> tuple[Inputs, Plan]:
    """Plan the members with these keys (all when None); a whole-org plan notes each identity that joins no one."""
    inputs = gather(org, rules, keys, count_active=True)
    plan = planner(org, rules, inputs, now)
    if keys is None:
        notes = tuple(identity.note(org.match_on) for identity in unmatched(org))
        if notes:
            plan = Plan(plan.actions, plan.notes + notes)
    return inputs, plan


def _decide(org: Organization, rules: Sequence[Rule], inputs: Inputs, now: datetime) -> Plan:
    """The plan of a run, housekeeping or approval: removals a SCIM held plan holds wait for its decision."""
    plan = reconcile(inputs.observed, rules, inputs.overrides, inputs.current, inputs.policy, now)
    return held.withhold(org.id, plan)


def _record_basis(org: Organization, stored: PlanBasis | None, digest: str, now: datetime) -> None:
    """Remember the config a whole-org plan was applied under; written only when it changed."""
    if stored is None:
        PlanBasis.create(org=org.id, fingerprint=digest, planned_at=now)
    elif stored.fingerprint != digest:
        PlanBasis.update(fingerprint=digest, planned_at=now).where(PlanBasis.id == stored.id).execute()


PENDING = "pending"
"""The plan basis of an org whose batched apply has not finished: it matches no config, so the next run plans the
whole org (:func:`_decide_read`) and finishes the job."""


def _mark_pending(org: Organization) -> None:
    PlanBasis.update(fingerprint=PENDING).where(PlanBasis.org == org.id).execute()


def _restore_basis(basis_id: int, fingerprint: str, planned_at: datetime) -> None:
    PlanBasis.update(fingerprint=fingerprint, planned_at=planned_at).where(PlanBasis.id == basis_id).execute()


def _apply(
    org: Organization,
    plan: Plan | Sequence[Action],
    inputs: Inputs,
    actor: str,
    now: datetime,
    progress: Progress | None,
    total: int | None = None,
    done: int = 0,
) -> int:
    """Apply ``plan``, reporting progress as ``done`` of ``total`` actions (the whole plan's, across batches)."""
    actions = plan.actions if isinstance(plan, Plan) else tuple(plan)
    total = len(actions) if total is None else total

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("applying", done, total)

    return apply_plan(org, actions, inputs, actor, now, advance if progress else None)


def _source_row(name: str) -> Source:
    row = Source.get_or_none(Source.name == name)
    if row is None:
        raise PipelineError(f"source {name}: not in the database; check the config's [[sources]] and restart")
    return row


def plan_org(config: Config, org_slug: str, *, now: datetime | None = None) -> RunResult:
    """Plan the org from what is staged now (no read), without applying: ``syncd plan --org``."""
    return reconcile_org(config, org_slug, dry_run=True, now=now)


@gc_paused()
def reconcile_org(
    config: Config,
    org_slug: str,
    *,
    dry_run: bool = False,
    actor: str = "system:reconcile",
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Plan the whole org from its staged state (rules changed, grace periods ran out) and apply it, guarded."""
    now = now or utcnow()
    org = orgs.get(org_slug)
    rules = org_rules(config, org.slug)
    outcome = RunResult(source="", org=org.slug)
    with write_transaction() as tx:
        lock_org(org.id)
        rekey(org)
        stored_basis = PlanBasis.get_or_none(PlanBasis.org == org.id)
        decision = _plan_guard_apply(
            org, rules, now, scope=None, dry_run=dry_run, actor=actor, progress=progress, stored_basis=stored_basis
        )
        outcome.record(decision)
        if dry_run:
            tx.rollback()
            return outcome
        if decision.held_reason is not None:
            return _hold(org, None, decision, outcome, None, False, actor, now)
        _finish(decision, now, _nothing)
    _apply_rest(decision, now, _nothing)
    outcome.applied = True
    return outcome


def _nothing() -> None:
    """No cursor to move: a whole-org re-plan or an approval without a source read."""


@gc_paused()
def approve(config: Config, plan_id: str, *, actor: str = "admin:cli", now: datetime | None = None) -> RunResult:
    """Apply exactly the held plan ``plan_id`` if nothing it was computed from has changed; otherwise mark it
    stale (ledgered) and plan again, through the guard."""
    now = now or utcnow()
    row = PlanRow.get_or_none(PlanRow.id == plan_id)
    if row is None:
        raise PipelineError(f"plan {plan_id}: no such plan; held plans are listed by 'syncd plan --org ORG'")
    if row.status != "held":
        raise PipelineError(f"plan {plan_id}: it is {row.status}, not held; nothing to approve")
    org = Organization.get_by_id(row.org_id)
    rules = org_rules(config, org.slug)
    if held.is_scim(row):
        return _approve_scim(row, org, rules, actor, now)
    source = Source.get_or_none(Source.id == row.source_id) if row.source_id else None
    summary = json.loads(row.summary)
    result: ReadResult | None = None
    if source is not None:
        try:
            result = connector_for(config.source(source.name)).read(row.cursor)
        except ConnectorError as error:
            source_runs.failed(source, str(error), now)
            raise
    stored = [Action.from_dict(a) for a in json.loads(row.actions)]
    outcome = RunResult(source=source.name if source else "", org=org.slug, plan_id=plan_id)

    # The approval overrides the guard's verdict; what must hold is that the plan is still the held one.
    def unchanged(decision: Decision) -> str | None:
        same = guard.fingerprint(decision.inputs, rules) == row.fingerprint and [
            a.as_dict() for a in decision.plan.actions
        ] == [a.as_dict() for a in stored]
        return None if same else "its inputs changed since it was held; planned again"

    def approved(decision: Decision) -> None:
        guard.decide(row, "approved", actor, now, f"approved by {actor}; applying {len(stored)} actions")

    staged: StageResult | None = None

    def advance() -> None:
        if source is not None and result is not None and staged is not None:
            source_runs.advanced(source, result, staged, now)

    with write_transaction() as tx:
        lock_org(org.id)
        if source is not None and result is not None:
            staged = stage(org, source, result, now)
        stored_basis = PlanBasis.get_or_none(PlanBasis.org == org.id)
        decision = _plan_guard_apply(
            org, rules, now, scope=None, actor=actor, judge=unchanged, accepted=approved, stored_basis=stored_basis
        )
        if decision.held_reason is None:
            _finish(decision, now, advance)
        else:
            tx.rollback()
    if decision.held_reason is None:
        _apply_rest(decision, now, advance)
        outcome.plan, outcome.actions, outcome.applied = Plan(tuple(stored)), len(stored), True
        return outcome
    with write_transaction():
        guard.decide(row, "stale", actor, now, decision.held_reason)
    if source is not None and result is not None:
        again = apply_read(
            config, source.name, result, read_cursor=row.cursor, full=bool(summary.get("full")), actor=actor, now=now
        )
    else:
        again = reconcile_org(config, org.slug, actor=actor, now=now)
    again.stale = True
    return again


def _approve_scim(row: PlanRow, org: Organization, rules: Sequence[Rule], actor: str, now: datetime) -> RunResult:
    """Apply the removals a SCIM held plan holds: its members are planned again now, and those whose plan still
    removes them are removed (a member the IdP has since restored is left alone)."""
    outcome = RunResult(source=json.loads(row.summary).get("source") or "", org=org.slug, plan_id=row.id)
    keys = held.held_keys(row)

    def held_removals(org: Organization, rules: Sequence[Rule], inputs: Inputs, now: datetime) -> Plan:
        # Not withheld: these are the removals the held plan withholds from every other plan.
        plan = reconcile(inputs.observed, rules, inputs.overrides, inputs.current, inputs.policy, now)
        targets = held.removal_targets(plan.actions)
        return Plan(tuple(a for a in plan.actions if a.target in targets))

    def approved(decision: Decision) -> None:
        targets = held.removal_targets(decision.plan.actions)
        left = len(keys) - len(targets)
        note = f"; {left} no longer removed (restored since)" if left else ""
        guard.decide(row, "approved", actor, now, f"approved by {actor}; applying {len(targets)} held removals{note}")
        held.clear(row)

    with write_transaction():
        lock_org(org.id)
        decision = _plan_guard_apply(
            org, rules, now, scope=set(keys), actor=actor, judge=_approved, planner=held_removals, accepted=approved
        )
        _finish(decision, now, _nothing)
    _apply_rest(decision, now, _nothing)
    outcome.plan, outcome.actions, outcome.applied = decision.plan, len(decision.plan.actions), True
    return outcome


def _approved(decision: Decision) -> str | None:
    """An admin's approval: nothing stops the plan."""
    return None


def reject(plan_id: str, *, actor: str, now: datetime | None = None) -> RunResult:
    """Discard a held plan (``syncd reject``): nothing it holds is applied; the decision and who made it are
    ledgered (``plan.rejected``)."""
    now = now or utcnow()
    with write_transaction():
        row = PlanRow.get_or_none(PlanRow.id == plan_id)
        if row is None:
            raise PipelineError(f"plan {plan_id}: no such plan; held plans are listed by 'syncd plan --org ORG'")
        if row.status != "held":
            raise PipelineError(f"plan {plan_id}: it is {row.status}, not held; nothing to reject")
        org = Organization.get_by_id(row.org_id)
        lock_org(org.id)
        discarded = len(held.actions_of(row))
        guard.decide(row, "rejected", actor, now, f"rejected by {actor}; {discarded} held actions discarded")
        held.clear(row)
    return RunResult(source="", org=org.slug, plan_id=plan_id, actions=discarded)


def _planned_under(org: Organization, rules: Sequence[Rule]) -> bool:
    """Whether the org's last whole-org plan was applied under these rules and its current policy, domains, match
    key and source precedences (its recorded basis, :func:`_record_basis`); not while a batched apply is pending.
    After a reload that changed the rules, every touched member is planned again until housekeeping has planned the
    whole org."""
    stored = sql.rows(
        "plan basis", lambda: PlanBasis.select(PlanBasis.fingerprint).where(PlanBasis.org == org.id), [org.id]
    )
    return bool(stored) and stored[0][0] == basis(org, rules)


def reconcile_touched(
    config: Config,
    org_id: int,
    match_keys: Iterable[str],
    actor: str,
    now: datetime | None = None,
    *,
    scim: bool = False,
    changed: Collection[str] | None = None,
) -> int:
    """Reconcile the members with these match keys, inside the caller's open write transaction.

    SCIM writes call it (``scim=True``) after changing identities, groups or memberships of the org's scim source,
    with the match keys of every identity whose data or memberships changed: those members are planned with the
    org's rules in ``config``, its policy, pins and every source's view of them, exactly as a whole-org plan would
    plan them. Returns the number of member changes applied. Only those members, their groups (and the groups
    enclosing them) and the org's teams are read, so the cost does not grow with the org. For SCIM writes the SCIM
    guard (:mod:`syncd.sync.held`) may hold the removals; the rest applies.

    ``changed`` names the identity columns the write changed, when it changed one identity and no membership (a
    SCIM PUT or PATCH of a user). Nothing is planned when none of them is one a plan reads under the org's rules
    (:func:`syncd.sync.gather.planned_columns`) and the org's last whole-org plan was made under the same rules and
    policy (:func:`_planned_under`): the write then changes nothing these members are planned from, and what time
    alone changes is housekeeping's (docs/architecture.md, "SCIM hot path"). None: always plan.
    """
    keys = {k for k in match_keys if k}
    if not keys:
        return 0
    now = now or utcnow()
    lock_org(org_id)
    org = _organization(org_id)
    rules = org_rules(config, org.slug)
    if changed is not None and planned_columns(rules).isdisjoint(changed) and _planned_under(org, rules):
        return 0
    inputs = gather(org, rules, keys)
    plan = reconcile(inputs.observed, rules, inputs.overrides, inputs.current, inputs.policy, now)
    if scim:
        plan = held.screen(org, plan, orgs.policy_of(org), actor, now)
    return apply_plan(org, plan, inputs, actor, now)


__all__ = [
    "PipelineError",
    "RunResult",
    "apply_read",
    "approve",
    "org_rules",
    "plan_org",
    "reconcile_org",
    "reconcile_touched",
    "reject",
    "run_source",
]
