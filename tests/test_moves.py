"""A run staged apart (SQLite) moves only the keys whose staged rows differ from the stored ones
(docs/architecture.md, "Batches"): after any reads, the stored identities, groups and memberships are those a run
that moves every key leaves. Reads add, update and remove people, move them between groups, rename, remove and
nest groups, list people (present, stored by an earlier read, or never held) as members; some are incomplete; a
move holds one or two keys, so every read spans several."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.interface import GroupRecord
from syncd.store import staging_area
from syncd.store.models import DirectoryGroup, GroupMember, Identity
from syncd.store.staging_area import StagingArea
from syncd.sync import pipeline
from tests.conftest import _empty_tables
from tests.directory import declare, make_config, snapshot, user

NOW = datetime(2026, 11, 3, 8, 0, 0)
NAMES = st.sampled_from(["ann", "ben", "cat", "dov", "eli", "fox", "gus"])
GROUP_KEYS = st.sampled_from(["staff", "eng", "it", "owners", "misc"])
USERS = st.dictionaries(
    NAMES,
    st.tuples(
        st.lists(GROUP_KEYS, max_size=3, unique=True),
        st.booleans(),
        st.sampled_from(["acme.com", "x.io"]),
        st.sampled_from([None, "Sales", "R&D"]),
    ),
    max_size=7,
)
GROUPS = st.dictionaries(
    GROUP_KEYS,
    st.tuples(st.sampled_from(["", " Team", " (old)"]), st.sets(GROUP_KEYS | NAMES.map(lambda n: f"k-{n}"))),
    max_size=4,
)
READ = st.tuples(USERS, GROUPS, st.booleans())


def read(people, groups, complete):
    users = [
        user(n, *keys, domain=domain, active=active, **({"department": dept} if dept else {}))
        for n, (keys, active, domain, dept) in sorted(people.items())
    ]
    records = tuple(GroupRecord(k, k.title() + suffix, member_keys=frozenset(m)) for k, (suffix, m) in groups.items())
    return snapshot(*users, groups=records, complete=complete)


def stored() -> tuple[list[tuple], ...]:
    def columns(model):
        return [f for name, f in model._meta.fields.items() if name != "id"]

    group_key = {g.id: g.key for g in DirectoryGroup.select()}
    members = [
        (group_key[row[0]], *row[1:])
        for row in GroupMember.select(GroupMember.group, *columns(GroupMember)[3:]).tuples()
    ]
    return (
        sorted(Identity.select(*columns(Identity)).tuples(), key=repr),
        sorted(DirectoryGroup.select(*columns(DirectoryGroup)).tuples(), key=repr),
        sorted(members, key=repr),
    )


def every_key(area: StagingArea, table: str) -> list[str]:
    """Every staged and stored key of the source: a run that moves all of them moves every row."""
    found = area.db.execute_sql(
        f"SELECT key FROM temp.{table} WHERE source_id = ? UNION SELECT key FROM main.{table} WHERE source_id = ?",
        (area.source_id, area.source_id),
    )
    return sorted(key for (key,) in found)


def every_member_key(area: StagingArea) -> list[str]:
    found = area.db.execute_sql(
        "SELECT member_key FROM temp.group_member WHERE source_id = ? "
        "UNION SELECT member_key FROM main.group_member WHERE source_id = ?",
        (area.source_id, area.source_id),
    )
    return sorted(key for (key,) in found)


def run_all(sqlite_store, sqlite_url, reads) -> tuple[list[tuple], ...]:
    _empty_tables(sqlite_store)
    config = declare(make_config(sqlite_url))
    for day, (people, groups, complete) in enumerate(reads):
        pipeline.apply_read(config, "hr", read(people, groups, complete), now=NOW + timedelta(days=day))
    return stored()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reads=st.lists(READ, min_size=1, max_size=4), keys=st.sampled_from([1, 2, staging_area.RANGE_KEYS]))
def test_moving_only_differing_keys_stores_what_moving_every_key_stores(
    sqlite_store, sqlite_url, monkeypatch, reads, keys
):
    monkeypatch.setattr(staging_area, "RANGE_KEYS", keys)
    restricted = run_all(sqlite_store, sqlite_url, reads)
    with monkeypatch.context() as everything:
        everything.setattr(StagingArea, "differing", every_key)
        everything.setattr(StagingArea, "_differing_memberships", every_member_key)
        assert run_all(sqlite_store, sqlite_url, reads) == restricted
