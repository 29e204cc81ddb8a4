"""A whole-org plan made in member chunks equals the plan made at once (docs/architecture.md, "Memory of a
whole-org plan"): on plain data through the planner (any chunk size, the last-owner rule and team creation across
chunk boundaries), and on the store through the pipeline (the applied ledger entries, the guard's verdict, a held
plan's actions and fingerprint)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import Policy
from syncd.domain.reconcile import Action, Current, CurrentMember, MemberState, OrgPlanner, Plan
from syncd.store.models import LedgerEntry, Organization
from syncd.store.models import Plan as PlanRow
from syncd.sync import chunked, guard, held, pipeline
from syncd.sync.gather import gather
from tests.conftest import _empty_tables
from tests.directory import RULES as DIRECTORY_RULES
from tests.directory import declare, make_config, snapshot, user
from tests.planning import NOW, POLICY, Rule, advance, empty, observed, person, plan
from tests.test_planner import GROUPS, IDENTITY, RULES


def in_chunks(identities, current: Current, rules, size: int, now: datetime = NOW) -> Plan:
    """The plan of these identities and members made ``size`` members at a time, in the pipeline's order: by
    match key, the active owners last."""
    by_key: dict[str, list] = {}
    for identity in identities:
        by_key.setdefault(identity.match_key, []).append(identity)
    keys = sorted(by_key.keys() | current.members.keys())
    owners = [k for k in keys if _owner(current, k)]
    keys = [k for k in keys if k not in owners] + owners
    overrides = {k: m.state.role for k, m in current.members.items() if m.state.pinned}
    planner = OrgPlanner(rules, GROUPS, observed([]).precedence, current.teams, current.active_owners, POLICY, now)
    actions: list[Action] = []
    notes = list(planner.cycles)
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        part = planner.chunk(
            [i for k in chunk for i in by_key.get(k, ())],
            {k: overrides[k] for k in chunk if k in overrides},
            {k: current.members[k] for k in chunk if k in current.members},
        )
        actions += part.actions
        notes += part.notes
    return Plan(tuple(actions), tuple(notes))


def _owner(current: Current, key: str) -> bool:
    member = current.members.get(key)
    return member is not None and member.state.status == "active" and member.state.role == "owner"


def same_plan(chunks: Plan, whole: Plan) -> None:
    """Team creations in the same order, each member's actions the same and in the same order, the same notes."""
    teams = [a for a in chunks.actions if a.action == "team.create"]
    assert teams == [a for a in whole.actions if a.action == "team.create"]
    members = sorted((a for a in chunks.actions if a.action != "team.create"), key=lambda a: a.target)
    assert members == [a for a in whole.actions if a.action != "team.create"]
    assert chunks.notes == whole.notes


OWNER_RULES = [*RULES, Rule(group="Staff", team="Staff", team_role="member", parent="Company")]


@settings(max_examples=150, deadline=None)
@given(
    first=st.lists(IDENTITY, max_size=8),
    second=st.lists(IDENTITY, max_size=8),
    days=st.integers(0, 60),
    size=st.integers(1, 6),
    owners=st.sets(st.sampled_from(["a@acme.com", "b@acme.com", "d@acme.com", "z@acme.com"]), max_size=3),
)
def test_a_plan_in_chunks_of_any_size_is_the_plan_made_at_once(first, second, days, size, owners):
    current = advance(empty(), plan(observed(first, GROUPS), OWNER_RULES))
    members = dict(current.members)
    for key in owners:  # owners the sources may no longer assert: the last-owner rule decides across chunks
        state = members[key].state if key in members else MemberState(key, key, key)
        members[key] = CurrentMember(
            key, MemberState(state.email, state.user_name, state.display_name, "active", "owner")
        )
    count = sum(1 for m in members.values() if m.state.status == "active" and m.state.role == "owner")
    current = Current(members, current.teams, count)
    later = NOW + timedelta(days=days)
    whole = plan(observed(second, GROUPS), OWNER_RULES, current, now=later)
    same_plan(in_chunks(second, current, OWNER_RULES, size, now=later), whole)


def test_the_last_owner_is_kept_when_an_owner_is_gained_in_an_earlier_chunk_and_lost_in_a_later_one():
    boss = CurrentMember("boss@acme.com", MemberState("boss@acme.com", "boss", "Boss", "active", "owner"))
    current = Current({"boss@acme.com": boss}, {}, active_owners=1)
    # a@ joins as owner in the first chunk; boss, no longer asserted, is planned in the last: a@ counts, boss goes.
    joining = [person("a@acme.com", "owners")]
    whole = plan(observed(joining, GROUPS), RULES, current)
    assert [a.action for a in whole.actions] == ["member.join", "member.suspend"]
    same_plan(in_chunks(joining, current, RULES, 1), whole)
    # Without a@, boss is the last owner in every chunking: kept, with the note.
    alone = in_chunks([person("c@partner.io")], current, RULES, 1)
    assert [a.action for a in alone.actions] == ["member.join"] and any("last owner" in n for n in alone.notes)


def test_a_team_is_created_once_by_the_first_chunk_that_needs_it():
    people = [person("a@acme.com", "eng"), person("b@acme.com", "eng"), person("d@acme.com", "eng-x")]
    whole = plan(observed(people, GROUPS), RULES)
    chunks = in_chunks(people, empty(), RULES, 1)
    same_plan(chunks, whole)
    created = [a.target for a in chunks.actions if a.action == "team.create"]
    assert created and len(set(created)) == len(created)  # three chunks need it; the first creates it


NOW_STORE = datetime(2026, 11, 3, 8, 0, 0)
NAMES = st.sampled_from(["ann", "ben", "cat", "dov", "eli", "fox", "gus"])
GROUP_NAMES = st.sampled_from(["Staff", "Engineering", "IT Admins", "Owners", "Misc"])
USERS = st.dictionaries(
    NAMES,
    st.tuples(st.lists(GROUP_NAMES, max_size=3, unique=True), st.booleans(), st.sampled_from(["acme.com", "x.io"])),
    max_size=7,
)


STORE_RULES = (*DIRECTORY_RULES, Rule(group="Misc", team="Misc", parent="Company"))
OTHER_RULES = (
    Rule(group="Misc", role="owner"),
    Rule(group="Staff", team="Staff", team_role="maintainer", parent="Company"),
    Rule(group="Engineering", team="Misc"),
)


def read(people, complete=True):
    users = [user(n, *groups, domain=domain, active=active) for n, (groups, active, domain) in sorted(people.items())]
    return snapshot(*users, complete=complete)


def entries_since(seq: int) -> list[dict]:
    query = LedgerEntry.select().where(LedgerEntry.seq > seq).order_by(LedgerEntry.seq)
    return [
        {"action": e.action, "target": e.target, "after": json.loads(e.after)}
        for e in query
        if e.action.startswith(("member.", "team."))
    ]


def entry(action: Action) -> dict:
    return {"action": action.action, "target": action.target, "after": json.loads(json.dumps(action.after))}


def last_seq() -> int:
    return max((e.seq for e in LedgerEntry.select(LedgerEntry.seq)), default=0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=USERS,
    second=USERS,
    days=st.integers(0, 40),
    chunk=st.integers(1, 4),
    batch=st.sampled_from([1, 2, pipeline.BATCH_MEMBERS]),
    max_count=st.sampled_from([1, 100]),
    rules=st.sampled_from([DIRECTORY_RULES, STORE_RULES, OTHER_RULES]),
)
def test_a_run_planned_in_chunks_applies_or_holds_exactly_the_plan_made_at_once(
    sqlite_store, sqlite_url, monkeypatch, first, second, days, chunk, batch, max_count, rules
):
    monkeypatch.setattr(chunked, "CHUNK_MEMBERS", chunk)
    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", batch)
    surveys: list[int] = []
    survey = chunked.ChunkedPlan.survey
    monkeypatch.setattr(chunked.ChunkedPlan, "survey", lambda self: surveys.append(1) or survey(self))
    _empty_tables(sqlite_store)
    config = declare(make_config(sqlite_url, rules=STORE_RULES))
    pipeline.apply_read(config, "hr", read(first), now=NOW_STORE)
    pipeline.apply_read(config, "hr", read(second), now=NOW_STORE)
    # Other rules and later (grace periods run out): the whole org is planned again, made at once by a dry run.
    later = NOW_STORE + timedelta(days=days)
    policy = Policy(grace_days=30, guard_max_percent=100.0, guard_max_count=max_count, transfer_to="it@acme.com")
    config = make_config(sqlite_url, policy=policy, rules=rules)
    declare(config)
    whole = pipeline.plan_org(config, "acme", now=later)
    org = Organization.get(Organization.slug == "acme")
    digest = guard.fingerprint(gather(org, rules, None, count_active=True), rules)
    surveys.clear()
    seq = last_seq()
    result = pipeline.reconcile_org(config, "acme", now=later)
    assert surveys == [1]
    assert result.held == whole.held and result.held_reason == whole.held_reason
    assert result.actions == whole.actions
    if whole.held:
        assert entries_since(seq) == []  # a held plan applies nothing
        row = PlanRow.get(PlanRow.id == result.plan_id)
        assert row.fingerprint == digest
        assert [a.as_dict() for a in held.actions_of(row)] == [a.as_dict() for a in whole.plan.actions]
        return
    applied = entries_since(seq)
    teams = [a for a in whole.plan.actions if a.action == "team.create"]
    assert [e for e in applied if e["action"] == "team.create"] == [entry(a) for a in teams]
    members = sorted((e for e in applied if e["action"] != "team.create"), key=lambda e: e["target"])
    assert members == [entry(a) for a in whole.plan.actions if a.action != "team.create"]
    assert result.plan is not None and result.plan.notes == whole.plan.notes
