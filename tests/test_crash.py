"""A process killed at any step of a run (stage, plan, apply, commit) leaves the store as before, and the next run
finishes the job with nothing lost or doubled (docs/architecture.md, invariant 2). A run applied in batches killed
between two batches leaves whole batches and the old cursor, and the next run ends exactly where an uninterrupted
run ends."""

from __future__ import annotations

import subprocess
from collections import Counter

import peewee
import pytest

from syncd.store.models import (
    GroupMember,
    Identity,
    LedgerEntry,
    Member,
    OutboxEvent,
    PlanBasis,
    Source,
    TeamMember,
)
from syncd.sync import ledger, pipeline
from tests.conftest import PYTHON, ROOT, _empty_tables, subprocess_env


def run(
    url: str, round_: int, fault: str | None = None, batch: int | None = None, chunk: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env.pop("SYNCD_FAULT", None)
    if fault:
        env["SYNCD_FAULT"] = fault
    return subprocess.run(
        [PYTHON, "-m", "tests.crash_run", url, str(round_), *(str(n) for n in (batch, chunk) if n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot_of_store() -> tuple[object, ...]:
    return (
        sorted(Member.select(Member.match_key, Member.status, Member.role).tuples()),
        sorted(Identity.select(Identity.key, Identity.version).tuples()),
        GroupMember.select().count(),
        TeamMember.select().count(),
        Counter(e.action for e in LedgerEntry.select()),
        OutboxEvent.select().count(),
        Source.get(Source.name == "hr").cursor,
    )


@pytest.mark.parametrize("step", ["stage", "plan", "apply", "commit"])
def test_kill_before_commit_changes_nothing_and_next_run_finishes(store, database_url, step):
    assert run(database_url, 1).returncode == 0
    before = snapshot_of_store()
    killed = run(database_url, 2, fault=step)
    assert killed.returncode == -9, killed.stderr
    assert snapshot_of_store() == before
    finished = run(database_url, 2)
    assert finished.returncode == 0, finished.stderr
    after = snapshot_of_store()
    assert after[-1] == "r2"
    actions = after[4] - before[4]
    assert actions["member.suspend"] == 3 and actions["member.join"] == 3 and actions["member.role"] == 2
    assert OutboxEvent.select().count() == sum(after[4].values())  # one event per ledgered change
    assert ledger.verify(Source.get(Source.name == "hr").org_id).ok
    assert run(database_url, 2).stdout.strip() == "applied 0"
    assert snapshot_of_store() == after


def test_kill_after_commit_keeps_everything_and_next_run_is_a_no_op(store, database_url):
    assert run(database_url, 1).returncode == 0
    killed = run(database_url, 2, fault="committed")
    assert killed.returncode == -9
    after = snapshot_of_store()
    assert after[-1] == "r2"
    assert run(database_url, 2).stdout.strip() == "applied 0"
    assert snapshot_of_store() == after


def ledger_and_outbox() -> tuple[object, ...]:
    """Every ledger entry and outbox event, as a multiset of what they say (their order across batches may differ)."""
    entries = LedgerEntry.select(
        LedgerEntry.actor, LedgerEntry.action, LedgerEntry.target, LedgerEntry.before, LedgerEntry.after
    ).tuples()
    events = OutboxEvent.select(OutboxEvent.event_type, OutboxEvent.order_key).tuples()
    return Counter(entries), Counter(events)


@pytest.mark.parametrize("step", ["batch", "commit"])
def test_kill_between_batches_leaves_whole_batches_and_the_next_run_ends_as_an_uninterrupted_one(
    store, database_url, step
):
    """Batches of 2 members: round 2 changes several, so ``batch`` kills after the first batch committed and
    ``commit`` before the last transaction (the one that moves the cursor) commits."""
    _kill_and_finish(store, database_url, step)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("step", ["move", "moved"])
def test_kill_between_moves_of_a_read_staged_apart_and_the_next_run_ends_as_an_uninterrupted_one(
    store, database_url, step
):
    """On SQLite the read is staged apart and moved into the stored rows 2 keys per transaction before the
    batches: ``move`` kills after the first move committed, ``moved`` after the last, before any batch."""
    _kill_and_finish(store, database_url, step)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_read_staged_apart_that_changes_nothing_makes_no_moves(store, database_url):
    """The same read again changes no stored row: it must not pass over the stored rows a range at a time (the
    fault point of a move is never reached, where 30 people 2 keys per move would reach it)."""
    assert run(database_url, 1, batch=2).returncode == 0
    again = run(database_url, 1, fault="move", batch=2)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "applied 0"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_stages_in_the_first_transaction_and_makes_no_moves(store, database_url):
    """PostgreSQL stages a read in the run's first transaction, not apart (docs/architecture.md, "Batches"): the
    fault point of a move is never reached and the run applies as one with no fault."""
    assert run(database_url, 1, batch=2).returncode == 0
    moved = run(database_url, 2, fault="move", batch=2)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() != "applied 0"


def _kill_and_finish(store: peewee.Database, database_url: str, step: str) -> None:
    assert run(database_url, 1, batch=2).returncode == 0
    assert run(database_url, 2, batch=2).stdout.strip() != "applied 0"
    uninterrupted = snapshot_of_store(), ledger_and_outbox()
    _empty_tables(store)

    assert run(database_url, 1, batch=2).returncode == 0
    before = snapshot_of_store()
    killed = run(database_url, 2, fault=step, batch=2)
    assert killed.returncode == -9, killed.stderr
    between = snapshot_of_store()
    assert between[-1] == "r1"  # the cursor moves only with the last batch
    if step != "move":  # a kill at ``move`` may follow moves that changed no row this compares
        assert between != before  # the first batch (or move) is committed
    assert PlanBasis.get(PlanBasis.org == Source.get(Source.name == "hr").org_id).fingerprint == pipeline.PENDING
    org_id = Source.get(Source.name == "hr").org_id
    assert ledger.verify(org_id).ok
    assert OutboxEvent.select().count() == sum(between[4].values())  # each committed change has its event

    finished = run(database_url, 2, batch=2)
    assert finished.returncode == 0, finished.stderr
    assert (snapshot_of_store(), ledger_and_outbox()) == uninterrupted
    assert ledger.verify(org_id).ok
    assert run(database_url, 2, batch=2).stdout.strip() == "applied 0"


@pytest.mark.parametrize("step", ["batch", "commit"])
def test_kill_between_batches_of_a_first_sync_planned_in_chunks_and_the_next_run_finishes_it(store, database_url, step):
    """A first sync plans the whole org in chunks (3 members) and applies it in batches (2): killed after some
    batches committed, the next run plans the whole org again and ends as an uninterrupted first sync."""
    assert run(database_url, 1, batch=2, chunk=3).returncode == 0
    uninterrupted = snapshot_of_store(), ledger_and_outbox()
    _empty_tables(store)

    killed = run(database_url, 1, fault=step, batch=2, chunk=3)
    assert killed.returncode == -9, killed.stderr
    between = snapshot_of_store()
    assert between[-1] is None  # the cursor moves only with the last batch
    assert between[0]  # the first batches are committed
    org_id = Source.get(Source.name == "hr").org_id
    assert ledger.verify(org_id).ok

    finished = run(database_url, 1, batch=2, chunk=3)
    assert finished.returncode == 0, finished.stderr
    assert (snapshot_of_store(), ledger_and_outbox()) == uninterrupted
    assert ledger.verify(org_id).ok
    assert run(database_url, 1, batch=2, chunk=3).stdout.strip() == "applied 0"
