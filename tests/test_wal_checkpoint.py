"""Who checkpoints SQLite's WAL (docs/architecture.md, "SQL and the two databases"): the commands run alone keep
SQLite's automatic checkpoint, ``syncd serve``'s connections leave it to the checkpointer, whose ``TRUNCATE``
without waiting gives up at once when a reader is in the way instead of holding the write lock. The checkpointer in a
running ``syncd serve`` is tested through the real command in tests/service/test_wal_checkpoint_in_serve.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import peewee
import pytest

from syncd.store import dialect, open_database, upgrade


@pytest.fixture
def opened(sqlite_url: str) -> Iterator[Callable[[bool], peewee.Database]]:
    def open_(background: bool) -> peewee.Database:
        db = open_database(sqlite_url, background_checkpoints=background)
        upgrade()
        return db

    yield open_
    open_database(sqlite_url).close()


def test_a_command_keeps_the_automatic_checkpoint_and_serve_leaves_it_to_the_checkpointer(opened):
    alone = opened(False)
    assert dialect.of(alone).autocheckpoint_pages() == 1000
    alone.close()
    served = opened(True)
    assert dialect.of(served).autocheckpoint_pages() == 0
    assert dialect.of(served).checkpoints_wal
    served.close()


def test_truncate_without_waiting_gives_up_at_once_while_a_reader_holds_an_older_snapshot(opened, sqlite_url):
    db = opened(True)
    forms = dialect.of(db)
    db.execute_sql("CREATE TABLE scratch (x integer)")
    reader = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM scratch").fetchone()
    db.execute_sql("INSERT INTO scratch VALUES (1)")

    assert forms.checkpoint_wal("TRUNCATE", wait=False).busy
    assert int(db.execute_sql("PRAGMA busy_timeout").fetchone()[0]) == 10_000
    passive = forms.checkpoint_wal("PASSIVE", wait=True)
    assert passive.wal_pages > 0

    reader.execute("COMMIT")
    reader.close()
    emptied = forms.checkpoint_wal("TRUNCATE", wait=False)
    assert (emptied.busy, emptied.wal_pages) == (False, 0)
    db.close()
