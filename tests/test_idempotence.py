"""Invariant 4 on the real store: whatever two reads say, applying the second read twice writes nothing the
second time (no ledger entries, no outbox events, no member or identity changes), and a whole-org plan afterwards
finds nothing that planning only the touched members missed. The members per apply batch are drawn too (1 and 2
put every few members in a batch of their own), and the members per chunk of a whole-org plan, so the same holds
across batch and chunk boundaries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.interface import GroupRecord
from syncd.store.models import Identity, LedgerEntry, Member, OutboxEvent, Source, TeamMember
from syncd.sync import chunked, ledger, pipeline
from tests.conftest import _empty_tables
from tests.directory import declare, make_config, snapshot, user

NOW = datetime(2026, 11, 3, 8, 0, 0)
NAMES = st.sampled_from(["ann", "ben", "cat", "dov", "eli", "fox"])
GROUP_NAMES = st.sampled_from(["Staff", "Engineering", "IT Admins", "Owners", "Misc"])
USERS = st.dictionaries(
    NAMES,
    st.tuples(st.lists(GROUP_NAMES, max_size=3, unique=True), st.booleans(), st.sampled_from(["acme.com", "x.io"])),
    max_size=6,
)
NESTING = st.lists(st.tuples(GROUP_NAMES, GROUP_NAMES), max_size=3)


def read(people, nesting, complete=True):
    users = [user(n, *groups, domain=domain, active=active) for n, (groups, active, domain) in sorted(people.items())]
    children: dict[str, set[str]] = {}
    for parent, child in nesting:
        children.setdefault(parent, set()).add(child)
    groups = tuple(GroupRecord(p, p, member_keys=frozenset(c)) for p, c in sorted(children.items()))
    return snapshot(*users, groups=groups, complete=complete)


def written() -> tuple[object, ...]:
    return (
        LedgerEntry.select().count(),
        OutboxEvent.select().count(),
        sorted(Member.select(Member.match_key, Member.status, Member.role, Member.updated_at).tuples()),
        sorted(Identity.select(Identity.key, Identity.version).tuples()),
        TeamMember.select().count(),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=USERS,
    second=USERS,
    nest1=NESTING,
    nest2=NESTING,
    complete=st.booleans(),
    days=st.integers(0, 40),
    batch=st.sampled_from([1, 2, pipeline.BATCH_MEMBERS]),
    chunk=st.sampled_from([1, 3, chunked.CHUNK_MEMBERS]),
)
def test_applying_the_same_read_twice_writes_nothing_the_second_time(
    sqlite_store, sqlite_url, monkeypatch, first, second, nest1, nest2, complete, days, batch, chunk
):
    monkeypatch.setattr(pipeline, "BATCH_MEMBERS", batch)
    monkeypatch.setattr(chunked, "CHUNK_MEMBERS", chunk)
    _empty_tables(sqlite_store)
    config = declare(make_config(sqlite_url))
    pipeline.apply_read(config, "hr", read(first, nest1), now=NOW)
    later = NOW + timedelta(days=days)
    pipeline.apply_read(config, "hr", read(second, nest2, complete), now=later)
    before = written()
    again = pipeline.apply_read(config, "hr", read(second, nest2, complete), now=later)
    assert again.actions == 0, [a.line() for a in again.plan.actions]
    assert written() == before
    whole = pipeline.plan_org(config, "acme", now=later)
    assert whole.actions == 0, ["planning only touched members missed:", *(a.line() for a in whole.plan.actions)]
    org_id = Source.get(Source.name == "hr").org_id
    assert ledger.verify(org_id).ok
    assert ledger_matches_members(org_id)


def ledger_matches_members(org_id: int) -> bool:
    """Invariant 3's other half: each member's latest ledger entry records exactly the state the member has."""
    from syncd.admin.members import listing
    from syncd.store.models import Organization

    for row in listing(Organization.get_by_id(org_id)):
        latest = (
            LedgerEntry.select()
            .where(LedgerEntry.target == f"member:{row['match_key']}")
            .order_by(LedgerEntry.seq.desc())
            .first()
        )
        recorded = json.loads(latest.after)
        held = {k: row[k] for k in ("email", "user_name", "display_name", "status", "role", "pinned", "teams")}
        if recorded != held:
            raise AssertionError(f"{row['match_key']}: ledger says {recorded}, store holds {held}")
    return True
