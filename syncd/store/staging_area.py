"""A run's staging area where staging holds no write lock: the connection's own TEMP copies of an org's source rows.

SQLite has one write lock per database. A run opens a read transaction (WAL readers never block writers), copies
the org's ``identity``, ``directory_group`` and ``group_member`` rows into TEMP tables of the same names, and stages,
plans and judges there: an unqualified name resolves to the TEMP table first
(https://www.sqlite.org/lang_naming.html), and writing a TEMP table takes no lock on the main database. Once the
guard accepts the plan, :meth:`StagingArea.moves` make the source's stored rows equal its staged ones, over the
keys whose rows differ, a chunk of keys per write transaction (docs/architecture.md, "Batches"). The TEMP tables
belong to the connection: a crash leaves nothing of them behind. Used only where
:attr:`syncd.store.dialect.Dialect.stages_apart`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import peewee

from syncd.store.models import DirectoryGroup, GroupMember, Identity

TABLES = (Identity, DirectoryGroup, GroupMember)
RANGE_KEYS = 1000
"""Identity keys (with their memberships) or group keys whose stored rows one move transaction makes equal to the
staged ones."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StagingArea:
    """The staged rows of one source of one org, apart from the stored ones until :meth:`move`."""

    def __init__(self, db: peewee.Database, org_id: int, source_id: int) -> None:
        self.db, self.org_id, self.source_id = db, org_id, source_id
        self._columns: dict[str, list[str]] = {}

    # -- the area -------------------------------------------------------------------------------------------------

    @contextmanager
    def opened(self) -> Iterator[StagingArea]:
        """TEMP tables shadowing the stored ones on this connection until the block ends."""
        try:
            # The TEMP database has its own page cache, 2 MB unless told: as large as the stored tables' one.
            cache = self.db.execute_sql("PRAGMA main.cache_size").fetchone()[0]
            self.db.execute_sql(f"PRAGMA temp.cache_size = {int(cache)}")
            for model in TABLES:
                self._create(model._meta.table_name)
            yield self
        finally:
            self.close()

    def close(self) -> None:
        """Drop the TEMP tables: unqualified names mean the stored tables again (callable inside a transaction)."""
        for table in (*(model._meta.table_name for model in TABLES), "moving"):
            self.db.execute_sql(f"DROP TABLE IF EXISTS temp.{_q(table)}")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction over the stored rows, which it copies into the area first: staging, planning and
        judging inside it see one state of the database and write only the area."""
        with self.db.atomic():
            for model in TABLES:
                table = _q(model._meta.table_name)
                columns = ", ".join(map(_q, self._columns[model._meta.table_name]))
                self.db.execute_sql(
                    f"INSERT INTO temp.{table} ({columns}) SELECT {columns} FROM main.{table} WHERE org_id = ?",
                    (self.org_id,),
                )
            for model in TABLES:
                self._index(model._meta.table_name)
            yield

    def _create(self, table: str) -> None:
        info = self.db.execute_sql(f"PRAGMA main.table_info({_q(table)})").fetchall()
        columns = [name for _, name, *_ in info]
        self._columns[table] = columns
        declared = [f"{_q(name)} {kind}" + (" PRIMARY KEY" if name == "id" else "") for _, name, kind, *_ in info]
        self.db.execute_sql(f"DROP TABLE IF EXISTS temp.{_q(table)}")
        self.db.execute_sql(f"CREATE TEMP TABLE {_q(table)} ({', '.join(declared)})")

    def _index(self, table: str) -> None:
        """The stored table's indexes, on the area's copy (planning and staging read through them)."""
        found = self.db.execute_sql(
            "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        ).fetchall()
        for (statement,) in found:
            self.db.execute_sql(re.sub(r"INDEX (IF NOT EXISTS )?", r"INDEX \1temp.", statement, count=1))

    # -- moving staged rows into the stored ones ------------------------------------------------------------------

    def moves(self) -> list[Callable[[], None]]:
        """The transactions that make the source's stored rows equal its staged ones, each over at most
        :data:`RANGE_KEYS` keys: the groups whose rows differ, then the identities whose rows or memberships differ
        (found by comparing every column of both sides, as the moves do), then removed groups, if any group differs.
        A key found equal needs no move; none at all when nothing differs."""
        groups = self.differing("directory_group")
        people = sorted(set(self.differing("identity")) | set(self._differing_memberships()))
        moves: list[Callable[[], None]] = [functools.partial(self.move_groups, c) for c in _chunks(groups)]
        moves += [functools.partial(self.move_people, c) for c in _chunks(people)]
        if groups:
            moves.append(self.remove_groups)
        return moves

    def differing(self, table: str) -> list[str]:
        """Keys whose staged row of ``table`` is new, changed or gone from the stored ones, in key order."""
        t = _q(table)
        changed = " OR ".join(f"s.{_q(c)} IS NOT m.{_q(c)}" for c in self._columns[table] if c != "id")
        found = self.db.execute_sql(
            f"SELECT s.key FROM temp.{t} s LEFT JOIN main.{t} m ON m.source_id = s.source_id AND m.key = s.key "
            f"WHERE s.source_id = ? AND (m.id IS NULL OR {changed}) UNION SELECT m.key FROM main.{t} m "
            f"WHERE m.source_id = ? AND NOT EXISTS (SELECT 1 FROM temp.{t} s WHERE s.source_id = m.source_id "
            "AND s.key = m.key) ORDER BY 1",
            (self.source_id, self.source_id),
        )
        return [key for (key,) in found]

    def _differing_memberships(self) -> list[str]:
        """Member keys with a staged membership not stored, or a stored one not staged, as :meth:`move_people`
        compares them: the group matched by key, then the one membership of that group and member key (both
        unique), then every other column."""
        others = [c for c in self._columns["group_member"] if c not in ("id", "group_id")]
        differ = " OR ".join(f"s.{_q(c)} IS NOT m.{_q(c)}" for c in others)
        found = self.db.execute_sql(
            "SELECT s.member_key FROM temp.group_member s JOIN temp.directory_group sg ON sg.id = s.group_id "
            "LEFT JOIN main.directory_group g ON g.source_id = sg.source_id AND g.key = sg.key "
            "LEFT JOIN main.group_member m ON m.group_id = g.id AND m.member_key = s.member_key "
            f"WHERE s.source_id = ? AND (m.id IS NULL OR {differ}) UNION "
            "SELECT m.member_key FROM main.group_member m LEFT JOIN main.directory_group g ON g.id = m.group_id "
            "LEFT JOIN temp.directory_group sg ON sg.source_id = g.source_id AND sg.key = g.key "
            "LEFT JOIN temp.group_member s ON s.group_id = sg.id AND s.member_key = m.member_key "
            f"WHERE m.source_id = ? AND (s.id IS NULL OR {differ})",
            (self.source_id, self.source_id),
        )
        return [key for (key,) in found]

    def move_groups(self, keys: list[str]) -> None:
        """New and changed groups among ``keys``; groups the read removed go in :meth:`remove_groups`, once no
        membership refers to them."""
        self._moving(keys)
        self._upsert("directory_group", "key")

    def move_people(self, keys: list[str]) -> None:
        """The identities with ``keys`` and the memberships of members with them (after every group has moved:
        memberships refer to the stored group ids)."""
        self._moving(keys)
        self._delete_gone("identity", "key")
        self._upsert("identity", "key")
        self._move_memberships()

    def remove_groups(self) -> None:
        self._delete_gone("directory_group", "key", every=True)

    def _moving(self, keys: list[str]) -> None:
        self.db.execute_sql("CREATE TEMP TABLE IF NOT EXISTS moving (key TEXT PRIMARY KEY)")
        self.db.execute_sql("DELETE FROM temp.moving")
        self.db.cursor().executemany("INSERT INTO temp.moving (key) VALUES (?)", [(key,) for key in keys])

    @staticmethod
    def _among(alias: str, column: str) -> str:
        return f" AND {alias}.{_q(column)} IN (SELECT key FROM temp.moving)"

    def _delete_gone(self, table: str, key: str, *, every: bool = False) -> None:
        t, k = _q(table), _q(key)
        where = "" if every else self._among("m", key)
        self.db.execute_sql(
            f"DELETE FROM main.{t} WHERE id IN (SELECT m.id FROM main.{t} m WHERE m.source_id = ?{where} AND NOT "
            f"EXISTS (SELECT 1 FROM temp.{t} s WHERE s.source_id = m.source_id AND s.{k} = m.{k}))",
            (self.source_id,),
        )

    def _upsert(self, table: str, key: str) -> None:
        t, k = _q(table), _q(key)
        copied = [c for c in self._columns[table] if c != "id"]
        where = self._among("s", key)
        changed = " OR ".join(f"s.{_q(c)} IS NOT m.{_q(c)}" for c in copied)
        self.db.execute_sql(
            f"UPDATE main.{t} AS m SET {', '.join(f'{_q(c)} = s.{_q(c)}' for c in copied)} FROM temp.{t} AS s "
            f"WHERE s.source_id = ?{where} AND m.source_id = s.source_id AND m.{k} = s.{k} AND ({changed})",
            (self.source_id,),
        )
        columns = ", ".join(map(_q, copied))
        self.db.execute_sql(
            f"INSERT INTO main.{t} ({columns}) SELECT {', '.join(f's.{_q(c)}' for c in copied)} FROM temp.{t} s "
            f"WHERE s.source_id = ?{where} AND NOT EXISTS "
            f"(SELECT 1 FROM main.{t} m WHERE m.source_id = s.source_id AND m.{k} = s.{k})",
            (self.source_id,),
        )

    def _move_memberships(self) -> None:
        """The memberships of the members being moved: staged ones refer to staged group ids, matched to the stored
        groups by key."""
        others = [c for c in self._columns["group_member"] if c not in ("id", "group_id")]
        same = " AND ".join(f"s.{_q(c)} IS m.{_q(c)}" for c in others)
        staged = (
            f"SELECT g.id AS group_id, {', '.join(f's.{_q(c)}' for c in others)} FROM temp.group_member s "
            "JOIN temp.directory_group sg ON sg.id = s.group_id "
            "JOIN main.directory_group g ON g.source_id = sg.source_id AND g.key = sg.key "
            "WHERE s.source_id = ?" + self._among("s", "member_key")
        )
        self.db.execute_sql(
            "DELETE FROM main.group_member WHERE id IN (SELECT m.id FROM main.group_member m WHERE m.source_id = ?"
            f"{self._among('m', 'member_key')} AND NOT EXISTS (SELECT 1 FROM ({staged}) s WHERE "
            f"s.group_id = m.group_id AND {same}))",
            (self.source_id, self.source_id),
        )
        columns = ", ".join(map(_q, ["group_id", *others]))
        self.db.execute_sql(
            f"INSERT INTO main.group_member ({columns}) SELECT {columns} FROM ({staged}) s WHERE NOT EXISTS "
            f"(SELECT 1 FROM main.group_member m WHERE m.group_id = s.group_id AND {same})",
            (self.source_id,),
        )


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[i : i + RANGE_KEYS] for i in range(0, len(keys), RANGE_KEYS)]
