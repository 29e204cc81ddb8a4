"""The narrow reads of planning use their index for lookups by key, not as a range over the org (SQLite's
EXPLAIN QUERY PLAN, https://www.sqlite.org/eqp.html)."""

from __future__ import annotations

import logging
from dataclasses import replace

from syncd.clock import utcnow
from syncd.sync import pipeline
from tests.directory import declare, make_config, snapshot, user

NOW = utcnow()


def test_identities_of_changed_members_are_looked_up_by_match_key_equality(sqlite_store, sqlite_url, caplog):
    """A changed read plans only the members it touched: their identities are read by ``match_key IN (...)``, which
    must search the (org, match_key) index once per key. With more than one key and no ``ANALYZE`` statistics,
    SQLite 3.40 read it as a range when the statement also said ``match_key IS NOT NULL``. The statements are taken
    from peewee's query log."""
    config = declare(make_config(sqlite_url))
    everyone = [user(f"u{i}") for i in range(20)]
    pipeline.apply_read(config, "hr", snapshot(*everyone), now=NOW)
    changed = [replace(u, display_name="Changed") if i % 4 == 0 else u for i, u in enumerate(everyone)]
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        pipeline.apply_read(config, "hr", snapshot(*changed, cursor="c2"), now=NOW)
    lookups = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, tuple) and '"match_key" IN (' in record.msg[0] and '"identity"' in record.msg[0]
    ]
    assert lookups, "the changed read looked up no identity by match key"
    for statement, params in lookups:
        plan = [row[-1] for row in sqlite_store.execute_sql(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()]
        assert any("(org_id=? AND match_key=?)" in step for step in plan), plan
