"""Every difference between SQLite and PostgreSQL, behind one object chosen from the open database.

No other module asks which database it runs on: it asks :func:`of` for the dialect and calls the form it needs.
The differences, and where each is documented:

| concern | SQLite | PostgreSQL |
|---|---|---|
| placeholder | ``?`` | ``%s`` |
| many parameter rows | ``executemany`` | psycopg2 ``execute_values`` / ``execute_batch`` (pages per round trip) |
| serializing writers | the writers' gate, then ``BEGIN IMMEDIATE`` (the one write lock) | a row lock ``FOR NO KEY UPDATE`` on the org |
| one-at-a-time across replicas | nothing (writes serialize) | advisory locks |
| a failed statement | undoes itself only | aborts the transaction: a savepoint around it |
| JSON paths | ``json_extract(col, '$."a"[0]."b"')`` | ``CAST(col AS jsonb) #>> '{a,0,b}'`` |
| case folding (NFC, lower) | a registered Python function | ``lower(normalize(...) COLLATE "und-x-icu")`` |
| time columns read raw | the text peewee stored | a ``datetime`` |
| a long writer between its transactions | pauses so waiting writers get the lock | nothing (waiters queue) |
| "did another writer commit meanwhile" | ``PRAGMA data_version`` | transaction ids and snapshots |
| a run's stage and plan | apart, in TEMP tables, under a read transaction | in its first write transaction |
| a counter that rows' changes move | ``CREATE TRIGGER ... BEGIN ... END`` | a PL/pgSQL trigger function |
| copying the write-ahead log into the database | ``PRAGMA wal_checkpoint``, by serve's checkpointer | the server's own checkpointer |

(https://www.sqlite.org/lang_transaction.html, https://www.sqlite.org/json1.html, https://www.sqlite.org/wal.html,
https://www.postgresql.org/docs/current/explicit-locking.html, https://www.postgresql.org/docs/current/functions-json.html,
https://www.psycopg.org/docs/extras.html#fast-execution-helpers, https://www.postgresql.org/docs/current/collation.html).
See docs/architecture.md, "Layers".
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import peewee
from peewee import SQL, NodeList, fn

from syncd.domain.folding import fold
from syncd.store import write_gate
from syncd.store.db import database

if TYPE_CHECKING:
    from syncd.store.staging_area import StagingArea

FOLD_FUNCTION = "scim_fold"
ICU_ROOT = "und-x-icu"
"""PostgreSQL's collation for ICU's root locale, made by initdb in every database of a server built with ICU."""
EXECUTEMANY_CHUNK = 5000
SQLITE_BUSY_RETRIES = ((3, 2), (8, 5), (18, 10), (33, 15), (53, 20), (128, 25), (228, 50))
"""(waited so far in ms, next sleep in ms) of SQLite's default busy handler: its delays 1, 2, 5, 10, 15, 20, 25, 25,
25, 50, 50, then 100 ms, as cumulative limits."""


@dataclass(frozen=True)
class WalCheckpoint:
    """What ``PRAGMA wal_checkpoint`` answered (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint): whether it
    was kept from finishing (a reader or writer in the way), the pages now in the WAL and how many of them are in the
    database file (all of them: the next writer starts the WAL over)."""

    busy: bool
    wal_pages: int
    checkpointed: int


def stored_time(value: datetime | str) -> datetime:
    """A time column read with raw SQL: SQLite hands back the text peewee stored, PostgreSQL a datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def of(db: peewee.Database | None = None) -> Dialect:
    """The dialect of ``db`` (default: the open store), made once per database object."""
    db = database.obj if db is None else db
    made = db.__dict__.get("_syncd_dialect")
    if made is None:
        made = Dialect(db)
        db.__dict__["_syncd_dialect"] = made
    return made


class Dialect:
    """The SQL forms of one database; :func:`of` gives the one of the open store."""

    def __init__(self, db: peewee.Database | None = None) -> None:
        self.db = database.obj if db is None else db
        self.postgres = isinstance(self.db, peewee.PostgresqlDatabase)
        self.param: str = self.db.param
        self._lock_sql: dict[str, str] = {}

    # -- identifiers ----------------------------------------------------------------------------------------------

    def quote(self, name: str) -> str:
        left, right = self.db.quote[0], self.db.quote[1]
        return f"{left}{name}{right}"

    def marks(self, count: int) -> str:
        """``count`` placeholders, comma-separated."""
        return ", ".join([self.param] * count)

    # -- transactions and locks -----------------------------------------------------------------------------------

    def write_transaction(self) -> AbstractContextManager[Any]:
        """A transaction for a change of org state (a savepoint when one is already open). SQLite takes its write
        lock up front (``BEGIN IMMEDIATE``) instead of failing at the first write, after waiting in line at the
        writers' gate (:mod:`syncd.store.write_gate`) no longer than the connection's busy timeout, which stays the
        backstop for writers that do not queue there; PostgreSQL serializes on the org row (:meth:`lock_row`)."""
        if not self.postgres and not self.db.in_transaction():
            return self._gated_write()
        return self.db.atomic()

    @contextlib.contextmanager
    def _gated_write(self) -> Iterator[Any]:
        gate = write_gate.of(self.db.database)
        if gate is None:
            with self.db.atomic(lock_type="IMMEDIATE") as tx:
                yield tx
            return
        timeout_ms = int(self.db.execute_sql("PRAGMA busy_timeout").fetchone()[0])
        if not gate.acquire(timeout_ms / 1000):
            raise peewee.OperationalError(f"database is locked (waited {timeout_ms} ms in line for the write lock)")
        try:
            with self.db.atomic(lock_type="IMMEDIATE") as tx:
                yield tx
        finally:
            gate.release()

    def staging_area(self, org_id: int, source_id: int) -> StagingArea | None:
        """Where a run stages its read apart from the stored rows, so that staging and planning hold no write lock
        (docs/architecture.md, "Batches"). SQLite: TEMP tables of the run's connection
        (:mod:`syncd.store.staging_area`); its one write lock would otherwise keep every SCIM write out for the whole
        stage and plan. PostgreSQL: None, the run stages in its first transaction; its writers wait on the org row
        only, and readers never wait."""
        if self.postgres:
            return None
        from syncd.store.staging_area import StagingArea

        return StagingArea(self.db, org_id, source_id)

    def let_writers_in(self, held_seconds: float | None) -> None:
        """Between two transactions of one long writer (a run's apply batches): on SQLite, pause long enough that a
        writer that has waited while the last one held the lock (``held_seconds``; None: long) gets it. Writers in
        line at the writers' gate (:mod:`syncd.store.write_gate`) are woken as the lock is released and get in at
        once; the pause is kept for the writers that wait in SQLite's busy handler instead (the lease's and the
        scheduler's single statements, other programs, a process without a gate file), which does not queue
        waiters: it sleeps between retries, longer the longer it has waited (1 to 25 ms in the first ~130 ms, then
        50, then 100 ms: ``sqliteDefaultBusyCallback``, https://www.sqlite.org/c3ref/busy_timeout.html), so without
        a pause the long writer takes the lock back at once. PostgreSQL queues waiters on the row lock: no pause."""
        if self.postgres:
            return
        waited = 1e9 if held_seconds is None else held_seconds * 1000
        retry_ms = next((delay for limit, delay in SQLITE_BUSY_RETRIES if waited < limit), 100)
        time.sleep((retry_ms + 5) / 1000)

    # -- write-ahead log ------------------------------------------------------------------------------------------

    @property
    def checkpoints_wal(self) -> bool:
        """Whether this process must checkpoint the write-ahead log itself when its connections do not (SQLite,
        ``wal_autocheckpoint`` 0); PostgreSQL's server checkpoints on its own."""
        return not self.postgres

    def checkpoint_wal(self, mode: str, *, wait: bool) -> WalCheckpoint:
        """Copy the WAL into the database file on this thread's connection: ``PASSIVE`` copies what no reader still
        needs and never waits or blocks anyone; ``TRUNCATE`` also empties the WAL file, for which it takes the write
        lock and needs every reader on the newest snapshot; without ``wait`` it gives up at once (busy) instead of
        holding the write lock while it waits in the busy handler, which would keep writers out
        (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html)."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        if wait:
            row = self.db.execute_sql(f"PRAGMA wal_checkpoint({mode})").fetchone()
        else:
            kept = int(self.db.execute_sql("PRAGMA busy_timeout").fetchone()[0])
            self.db.execute_sql("PRAGMA busy_timeout = 0")
            try:
                row = self.db.execute_sql(f"PRAGMA wal_checkpoint({mode})").fetchone()
            finally:
                self.db.execute_sql(f"PRAGMA busy_timeout = {kept}")
        return WalCheckpoint(busy=bool(row[0]), wal_pages=max(0, int(row[1])), checkpointed=max(0, int(row[2])))

    def autocheckpoint_pages(self) -> int:
        """This connection's ``wal_autocheckpoint``: the WAL size in pages at which a commit checkpoints (0: never)."""
        return int(self.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0])

    def quiet_marker(self) -> int | None:
        """At the end of a write transaction, after its writes: a mark for :meth:`quiet_since` at the start of the
        next one, or None when none can be given (the next one is then not quiet).

        SQLite: ``PRAGMA data_version``, which changes when another connection commits
        (https://www.sqlite.org/pragma.html#pragma_data_version). PostgreSQL: a transaction id S taken now (a
        subtransaction's, :meth:`_fresh_id`), given only when the snapshot taken after it has no transaction in
        progress and its xmax is S + 1: a snapshot's xmax is one past the latest completed id and its xip lists
        the ids in progress below xmax, our own excluded
        (https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-SNAPSHOT), so every other id up
        to S has completed. Our own top-level id is not used: it was given at the transaction's first write, and
        any id another session took during a long transaction would spoil it."""
        if not self.postgres:
            return self._data_version()
        now = self._fresh_id()
        xmax, in_progress = self._snapshot()
        return now if not in_progress and xmax == now + 1 else None

    def quiet_since(self, marker: int | None) -> bool:
        """At the start of a write transaction, after its lock: True only when no other connection can have
        committed since the transaction that gave ``marker`` (:meth:`quiet_marker`). Any doubt answers False.

        PostgreSQL: our transaction id Y is the marker's + 1 (no one took an id in between, and writing takes
        one), and the snapshot has nothing in progress and nothing completed from Y on (xmax is Y). Ids are
        cluster-wide, so another database's or autovacuum's transaction also answers False: the caller then does
        the careful thing, never the wrong one."""
        if marker is None:
            return False
        if not self.postgres:
            return self._data_version() == marker
        ours = self._transaction_id()
        if ours != marker + 1:
            return False
        xmax, in_progress = self._snapshot()
        return not in_progress and xmax == ours

    def _data_version(self) -> int:
        return int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])

    def _transaction_id(self) -> int:
        """The current transaction's id (given now if it has none yet), in its own statement: a statement's
        snapshot is taken before it runs, so reading the snapshot in the same statement would miss our id."""
        return int(self.db.execute_sql("SELECT pg_current_xact_id()::text").fetchone()[0])

    def _fresh_id(self) -> int:
        """A transaction id given now: a subtransaction writes one row to a temporary table, reads the id off the
        row (``xmin``) and is rolled back, so that it has completed (and left nothing) when this returns."""
        self.db.execute_sql("CREATE TEMPORARY TABLE IF NOT EXISTS syncd_quiet (x integer)")
        self.db.execute_sql("SAVEPOINT syncd_quiet")
        given = int(self.db.execute_sql("INSERT INTO syncd_quiet VALUES (1) RETURNING xmin::text").fetchone()[0])
        self.db.execute_sql("ROLLBACK TO SAVEPOINT syncd_quiet")
        self.db.execute_sql("RELEASE SAVEPOINT syncd_quiet")
        return given

    def _snapshot(self) -> tuple[int, list[int]]:
        """This statement's snapshot: its xmax and the ids in progress below it."""
        sql = "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text) FROM pg_current_snapshot() s"
        xmax, in_progress = self.db.execute_sql(sql).fetchone()
        return int(xmax), [int(xid) for xid in in_progress]

    def lock_row(self, model: type[peewee.Model], row_id: int) -> bool:
        """Lock one row for the rest of the write transaction (PostgreSQL; SQLite's write transaction already holds
        the database's single write lock). ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: rows inserted earlier in the
        same transaction that reference it hold ``FOR KEY SHARE``, which ``FOR UPDATE`` would wait for in a cycle.
        The text is composed once per table: every SCIM write takes it. True when a lock was taken now (another
        writer may have changed the row while this one waited), False on SQLite."""
        if not self.postgres:
            return False
        table = model._meta.table_name
        sql = self._lock_sql.get(table)
        if sql is None:
            sql = f"SELECT {self.quote('id')} FROM {self.quote(table)} WHERE {self.quote('id')} = {self.param} "
            sql += "FOR NO KEY UPDATE"
            self._lock_sql[table] = sql
        self.db.execute_sql(sql, (row_id,))
        return True

    @contextlib.contextmanager
    def session_lock(self, key: int) -> Iterator[None]:
        """Hold a database-wide lock named ``key`` for the block, across transactions (a PostgreSQL session-level
        advisory lock; nothing on SQLite, whose write transactions already serialize)."""
        if not self.postgres:
            yield
            return
        self.db.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))

    def transaction_lock(self, key: int) -> None:
        """Hold a database-wide lock named ``key`` until the transaction ends (PostgreSQL advisory; SQLite none)."""
        if self.postgres:
            self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))

    def may_fail(self) -> AbstractContextManager[Any]:
        """Around a statement that may fail (a uniqueness violation) while the transaction goes on: PostgreSQL aborts
        the whole transaction on a failed statement, so it gets a savepoint; SQLite undoes only the failed statement
        (https://www.sqlite.org/lang_conflict.html, ABORT)."""
        return self.db.atomic() if self.postgres else contextlib.nullcontext()

    # -- many rows ------------------------------------------------------------------------------------------------

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """``INSERT`` many rows: ``execute_values`` (multi-row VALUES pages) on PostgreSQL, ``executemany`` on SQLite."""
        names = ", ".join(self.quote(c) for c in columns)
        cursor = self.db.cursor()
        if self.postgres:
            from psycopg2.extras import execute_values

            execute_values(cursor, f"INSERT INTO {self.quote(table)} ({names}) VALUES %s", rows, page_size=1000)
            return
        cursor.executemany(f"INSERT INTO {self.quote(table)} ({names}) VALUES ({self.marks(len(columns))})", rows)

    def execute_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One statement for many parameter rows: sqlite3's executemany, or psycopg2's execute_batch (which sends
        pages of statements per round trip; plain executemany there is one round trip per row)."""
        cursor = self.db.cursor()
        if self.postgres:
            from psycopg2.extras import execute_batch

            execute_batch(cursor, sql, rows, page_size=500)
            return
        for start in range(0, len(rows), EXECUTEMANY_CHUNK):
            cursor.executemany(sql, rows[start : start + EXECUTEMANY_CHUNK])

    def random_message_id(self) -> str:
        """An SQL expression for a random ``msg_…`` webhook id (for rows written before ids were stored)."""
        if self.postgres:
            return "'msg_' || md5(random()::text || clock_timestamp()::text || id::text)"
        return "'msg_' || lower(hex(randomblob(16)))"

    def column_types_are_enforced(self) -> bool:
        """Whether ``varchar(n)`` refuses longer text (PostgreSQL) or is only a name (SQLite)."""
        return self.postgres

    # -- JSON -----------------------------------------------------------------------------------------------------

    def json_path(self, keys: Sequence[str | int]) -> Any:
        """``keys`` (object keys, or integers for array positions) as the path parameter: SQLite's text path with
        each key quoted (a ``"`` doubled), PostgreSQL's ``text[]`` (the driver escapes it)."""
        if self.postgres:
            return [str(key) for key in keys]
        return "$" + "".join(
            f"[{key}]" if isinstance(key, int) else '."' + key.replace('"', '""') + '"' for key in keys
        )

    def json_value(self, column: peewee.Node, keys: Sequence[str | int]) -> peewee.Node:
        """The scalar at ``keys`` inside a JSON text column (text for strings; NULL when absent)."""
        if self.postgres:
            path = self.json_path(keys)
            return NodeList((SQL("(CAST("), column, SQL(f" AS jsonb) #>> {self.param})", [path])), glue="")
        return fn.json_extract(column, self.json_path(keys))

    def json_type(self, column: peewee.Node, keys: Sequence[str]) -> peewee.Node:
        """The JSON type name at ``keys`` ('object', 'array', 'text'/'string', ...) or NULL."""
        if self.postgres:
            path = self.json_path(keys)
            return NodeList((SQL("jsonb_typeof(CAST("), column, SQL(f" AS jsonb) #> {self.param})", [path])), glue="")
        return fn.json_type(column, self.json_path(keys))

    def element_value(self, keys: Sequence[str]) -> peewee.Node:
        """The scalar at ``keys`` inside the current array element (inside :meth:`exists_element`)."""
        if self.postgres:
            if not keys:
                return SQL("(e.v #>> '{}')")
            return SQL(f"(e.v #>> {self.param})", [self.json_path(keys)])
        if not keys:
            return SQL("e.value")
        return SQL(f"json_extract(e.value, {self.param})", [self.json_path(keys)])

    def exists_element(self, column: peewee.Node, keys: Sequence[str], condition: peewee.Node) -> peewee.Node:
        """EXISTS an element of the JSON array at ``keys`` satisfying ``condition`` (built on element_value)."""
        path = self.json_path(keys)
        if self.postgres:
            p = self.param
            return NodeList(
                (
                    SQL("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(CAST("),
                    column,
                    SQL(f" AS jsonb) #> {p}) = 'array' THEN CAST(", [path]),
                    column,
                    SQL(f" AS jsonb) #> {p} ELSE '[]'::jsonb END) AS e(v) WHERE ", [path]),
                    condition,
                    SQL(")"),
                ),
                glue="",
            )
        return NodeList(
            (
                SQL("EXISTS (SELECT 1 FROM json_each("),
                column,
                SQL(f", {self.param}) AS e WHERE ", [path]),
                condition,
                SQL(")"),
            ),
            glue="",
        )

    def json_literal(self, value: Any) -> Any:
        """A value as :meth:`json_value` returns it: booleans are 1/0 in SQLite and 'true'/'false' in PostgreSQL."""
        if isinstance(value, bool) and self.postgres:
            return "true" if value else "false"
        if isinstance(value, bool):
            return 1 if value else 0
        if self.postgres and not isinstance(value, str):
            return str(value)
        return value

    # -- change counters ------------------------------------------------------------------------------------------

    def change_counter(self, counter: str, watched: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
        """The statements (idempotent) making ``counter`` a one-row table whose ``n`` goes up, in the same
        transaction, whenever a row of a watched table is deleted, or updated with a new value in one of the
        columns named with it. A reader that kept something it read from those tables knows it still holds while
        ``n`` has not moved (https://www.sqlite.org/lang_createtrigger.html,
        https://www.postgresql.org/docs/current/sql-createtrigger.html)."""
        table = self.quote(counter)
        bump = f"UPDATE {table} SET {self.quote('n')} = {self.quote('n')} + 1"
        statements = [
            f"CREATE TABLE IF NOT EXISTS {table} ({self.quote('id')} INTEGER PRIMARY KEY, {self.quote('n')} BIGINT NOT NULL)",
            f"INSERT INTO {table} ({self.quote('id')}, {self.quote('n')}) SELECT 1, 0 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table})",
        ]
        function = self.quote(f"{counter}_bump")
        if self.postgres:
            statements.append(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN {bump}; RETURN NULL; END $$"
            )
        for watched_table, columns in watched:
            if self.postgres:  # TRUNCATE fires no DELETE trigger (SQLite has none: its DELETE fires them per row)
                name = self.quote(f"{counter}_{watched_table}_truncate")
                statements.append(f"DROP TRIGGER IF EXISTS {name} ON {self.quote(watched_table)}")
                statements.append(
                    f"CREATE TRIGGER {name} AFTER TRUNCATE ON {self.quote(watched_table)} FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {function}()"
                )
            changed = " OR ".join(
                f"OLD.{self.quote(c)} IS {'DISTINCT FROM' if self.postgres else 'NOT'} NEW.{self.quote(c)}"
                for c in columns
            )
            for event, condition in (("DELETE", ""), ("UPDATE", changed)):
                name = self.quote(f"{counter}_{watched_table}_{event.lower()}")
                when = f" WHEN ({condition})" if condition else ""
                if self.postgres:
                    statements.append(f"DROP TRIGGER IF EXISTS {name} ON {self.quote(watched_table)}")
                    statements.append(
                        f"CREATE TRIGGER {name} AFTER {event} ON {self.quote(watched_table)} FOR EACH ROW{when} "
                        f"EXECUTE FUNCTION {function}()"
                    )
                else:
                    statements.append(
                        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {self.quote(watched_table)} "
                        f"FOR EACH ROW{when} BEGIN {bump}; END"
                    )
        return statements

    # -- strings --------------------------------------------------------------------------------------------------

    def register_functions(self) -> None:
        """Give SQLite the case folding PostgreSQL does natively (idempotent)."""
        if not self.postgres and FOLD_FUNCTION not in self.db._functions:
            self.db.register_function(fold, FOLD_FUNCTION, 1, deterministic=True)

    def fold(self, node: peewee.Node) -> peewee.Node:
        """:func:`syncd.domain.folding.fold` in SQL (the one identifier folding), so a filter folds as stored.

        PostgreSQL's ``lower`` maps case as the collation's ctype says: with the database's own, a database made
        with ``LC_CTYPE 'C'`` lowers ASCII letters only, and libc's ``C.UTF-8`` maps letter by letter (no final
        sigma, ``İ`` to a plain ``i``). ICU's root locale maps as Python's ``str.lower`` does, whatever the
        database's locale; a server built without ICU keeps the database's own ctype.
        """
        if self.postgres:
            normalized = fn.normalize(node)
            if self._has_icu_root:
                normalized = NodeList((normalized, SQL(f'COLLATE "{ICU_ROOT}"')))
            return fn.lower(normalized)
        self.register_functions()
        return getattr(fn, FOLD_FUNCTION)(node)

    @functools.cached_property
    def _has_icu_root(self) -> bool:
        found = self.db.execute_sql(
            f"SELECT 1 FROM pg_collation WHERE collname = {self.param} AND collprovider = 'i'", (ICU_ROOT,)
        ).fetchone()
        return found is not None

    def text(self, node: peewee.Node) -> peewee.Node:
        """A string comparison operand in byte (code point) order, as Python compares strings."""
        if self.postgres:
            return NodeList((node, SQL('COLLATE "C"')))
        return node

    def contains(self, node: peewee.Node, key: str) -> peewee.Node:
        if self.postgres:
            return fn.strpos(node, key) > 0
        return fn.instr(node, key) > 0

    def starts_with(self, node: peewee.Node, key: str) -> peewee.Node:
        return fn.substr(node, 1, len(key)) == key

    def ends_with(self, node: peewee.Node, key: str) -> peewee.Node:
        if self.postgres:
            return fn.right(node, len(key)) == key
        return fn.substr(node, -len(key)) == key
