"""The dialect's "did another connection commit since my last transaction" marker, with two real connections on
SQLite and PostgreSQL: an answer of "quiet" must never hide another connection's commit."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from syncd.store import dialect

RETRIES = 200
"""PostgreSQL transaction ids are cluster-wide: any other session (another test database, autovacuum) taking one
between our two transactions makes the answer "not quiet", which is safe but not what a quiet case checks. Such
sessions come in bursts (other xdist workers' PostgreSQL tests can keep one going for seconds), so the quiet cases
try again, a little later each time (:func:`later`), for up to about a minute and a half before giving up."""


def later(attempt: int) -> None:
    time.sleep(min(0.05 * (attempt + 1), 0.5))


@pytest.fixture
def connection(store, database_url) -> Iterator[Any]:
    """A second connection to the store's database (DB-API), and a scratch table to write to."""
    if database_url.startswith("sqlite"):
        second = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    else:
        import psycopg2

        second = psycopg2.connect(database_url)
    store.execute_sql("CREATE TABLE scratch (x integer)")
    yield second
    second.close()
    store.execute_sql("DROP TABLE scratch")


def _write_and_mark(d: dialect.Dialect) -> int | None:
    with d.write_transaction():
        d.db.execute_sql("INSERT INTO scratch VALUES (1)")
        return d.quiet_marker()


def _quiet(d: dialect.Dialect, marker: int | None) -> bool:
    with d.write_transaction():
        return d.quiet_since(marker)


def test_the_next_transaction_is_quiet_when_no_other_connection_wrote(connection):
    d = dialect.of()
    answers = []
    for attempt in range(RETRIES):
        answers.append(_quiet(d, _write_and_mark(d)))
        if answers[-1]:
            break
        later(attempt)
    assert answers[-1], answers


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_commit_by_another_connection_during_the_transaction_leaves_the_next_one_quiet(connection):
    """Another connection that commits while ours runs (PostgreSQL: SQLite's write lock keeps it out) committed
    before the marker was taken: the next transaction is still quiet. Its id is above ours, so our own top-level id
    would not do as the marker."""
    d = dialect.of()
    answers = []
    for attempt in range(RETRIES):
        with d.write_transaction():
            d.db.execute_sql("INSERT INTO scratch VALUES (1)")
            connection.cursor().execute(f"INSERT INTO scratch VALUES ({attempt})")
            connection.commit()
            d.db.execute_sql("INSERT INTO scratch VALUES (1)")
            marker = d.quiet_marker()
        answers.append(_quiet(d, marker))
        if answers[-1]:
            break
        later(attempt)
    assert answers[-1], answers


def test_a_commit_by_another_connection_in_between_is_never_quiet(connection):
    d = dialect.of()
    marker = _write_and_mark(d)
    connection.cursor().execute("INSERT INTO scratch VALUES (2)")
    connection.commit()
    assert not _quiet(d, marker)


def test_no_marker_is_never_quiet(connection):
    assert not _quiet(dialect.of(), None)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_postgresql_marker_while_another_transaction_with_an_id_is_in_progress(connection):
    """Its commit may come after ours, unseen by the next transaction's check: the marker refuses up front."""
    connection.cursor().execute("SELECT pg_current_xact_id()")
    assert _write_and_mark(dialect.of()) is None
    connection.rollback()
