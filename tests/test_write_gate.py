"""SQLite writers of separate processes wait in line at the writers' gate (syncd.store.write_gate) instead of
polling in SQLite's busy handler: they serialise without ``database is locked``, a writer already waiting gets in
while a long writer pauses between its transactions, the wait is bounded by the busy timeout, and a gate that
cannot be opened falls back to the busy handler. Real SQLite files, real processes (multiprocessing spawn)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

import peewee
import pytest

from syncd.store import dialect, write_gate

SPAWN = multiprocessing.get_context("spawn")


def open_store(path: Path, busy_ms: int = 10_000) -> peewee.SqliteDatabase:
    db = peewee.SqliteDatabase(str(path), pragmas={"journal_mode": "wal", "busy_timeout": busy_ms})
    db.execute_sql("CREATE TABLE IF NOT EXISTS writes (who TEXT NOT NULL)")
    return db


def write(db: peewee.SqliteDatabase, who: str) -> None:
    with dialect.of(db).write_transaction():
        db.execute_sql("INSERT INTO writes (who) VALUES (?)", (who,))


def long_writer(path: str, holding, release) -> None:
    """A sync's two apply batches: the first held until told, then the pause between batches, then the second."""
    db = open_store(Path(path))
    with dialect.of(db).write_transaction():
        db.execute_sql("INSERT INTO writes (who) VALUES ('long-1')")
        holding.set()
        release.wait(60)
    dialect.of(db).let_writers_in(None)
    write(db, "long-2")


def someone_queues(path: Path) -> bool:
    """Whether a writer is blocked in ``flock`` of the gate file (a ``->`` line of /proc/locks names its inode)."""
    inode = os.stat(str(path) + write_gate.GATE_SUFFIX).st_ino
    with open("/proc/locks", encoding="ascii") as locks:
        return any("->" in line and f":{inode} " in line for line in locks)


def gate_is_held(path: Path) -> bool:
    probe = os.open(str(path) + write_gate.GATE_SUFFIX, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)
    return False


def wait_for(condition, tries: int = 6000) -> bool:
    for _ in range(tries):
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_a_writer_of_another_process_waits_in_line_and_gets_in_at_the_hand_over(tmp_path):
    path = tmp_path / "s.db"
    open_store(path).close()
    holding, release = SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(target=long_writer, args=(str(path), holding, release))
    other.start()
    errors: list[BaseException] = []
    try:
        assert holding.wait(60)
        assert gate_is_held(path), "the long writer's transaction does not hold the gate"
        db = open_store(path)

        def waiter() -> None:
            try:
                write(db, "scim")
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=waiter)
        thread.start()
        assert wait_for(lambda: someone_queues(path)), "the waiting writer is not in line on the gate"
        release.set()
        thread.join(60)
        other.join(60)
    finally:
        release.set()
        other.join(60)
    assert errors == [] and other.exitcode == 0
    rows = [who for (who,) in open_store(path).execute_sql("SELECT who FROM writes ORDER BY rowid").fetchall()]
    assert rows == ["long-1", "scim", "long-2"]


def test_many_writers_of_two_processes_serialise_without_database_is_locked(tmp_path):
    path = tmp_path / "s.db"
    open_store(path).close()
    processes = [SPAWN.Process(target=burst, args=(str(path), f"p{n}")) for n in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0]
    count = open_store(path).execute_sql("SELECT count(*) FROM writes").fetchone()[0]
    assert count == 2 * BURST


BURST = 200


def burst(path: str, who: str) -> None:
    """Short write transactions back to back, each reading then writing (the ledger's pattern), busy timeout 1 s:
    any ``database is locked`` fails the process."""
    db = open_store(Path(path), busy_ms=1000)
    for _ in range(BURST):
        with dialect.of(db).write_transaction():
            db.execute_sql("SELECT count(*) FROM writes").fetchone()
            db.execute_sql("INSERT INTO writes (who) VALUES (?)", (who,))


def test_the_wait_in_line_is_bounded_by_the_busy_timeout(tmp_path):
    """A writer that cannot get in line within its busy timeout fails as SQLite would (``database is locked``,
    which SCIM answers with 503 and Retry-After) and leaves the gate to the next one."""
    path = tmp_path / "s.db"
    open_store(path).close()
    holding, release = SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(target=long_writer, args=(str(path), holding, release))
    other.start()
    try:
        assert holding.wait(60)
        db = open_store(path, busy_ms=50)
        with pytest.raises(peewee.OperationalError, match="locked"):
            write(db, "scim")
    finally:
        release.set()
        other.join(60)
    assert other.exitcode == 0
    write(db, "after")
    rows = [who for (who,) in db.execute_sql("SELECT who FROM writes ORDER BY rowid").fetchall()]
    assert rows == ["long-1", "long-2", "after"]


def test_a_gate_that_cannot_be_opened_falls_back_to_the_busy_handler(tmp_path):
    path = tmp_path / "s.db"
    (tmp_path / ("s.db" + write_gate.GATE_SUFFIX)).mkdir()
    db = open_store(path)
    assert write_gate.of(str(path)) is None
    write(db, "alone")
    dialect.of(db).let_writers_in(0.0)
    write(db, "again")
    assert db.execute_sql("SELECT count(*) FROM writes").fetchone()[0] == 2
