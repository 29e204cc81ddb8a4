"""A run's staging area where staging holds no write lock: the connection's own TEMP copies of an org's source rows.

SQLite has one write lock per database. A run opens a read transaction (WAL readers never block writers), copies
the org's ``identity``, ``directory_group`` and ``group_member`` rows into TEMP tables of the same names, and stages,
plans and judges there: an unqualified name resolves to the TEMP table first
(https://www.sqlite.org/lang_naming.html), and writing a TEMP table takes no lock on the main database. Once the
guard accepts the plan, :meth:`StagingArea.move` makes the source's stored rows equal its staged ones, a range of
keys per write transaction (docs/architecture.md, "Batches"). The TEMP tables belong to the connection: a crash
leaves nothing of them behind. Used only where :attr:`syncd.store.dialect.Dialect.stages_apart`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
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
        for model in TABLES:
            self.db.execute_sql(f"DROP TABLE IF EXISTS temp.{_q(model._meta.table_name)}")

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

    def ranges(self, table: str = "identity") -> list[tuple[str | None, str | None]]:
        """Key ranges [low, high) of about :data:`RANGE_KEYS` keys each over the source's staged and stored rows of
        ``table`` (None: unbounded)."""
        t = _q(table)
        cursor = self.db.execute_sql(
            f"SELECT key FROM temp.{t} WHERE source_id = ? UNION SELECT key FROM main.{t} WHERE source_id = ? "
            "ORDER BY 1",
            (self.source_id, self.source_id),
        )
        bounds: list[str | None] = [None]
        for i, (key,) in enumerate(cursor):
            if i and i % RANGE_KEYS == 0:
                bounds.append(key)
        bounds.append(None)
        return list(itertools.pairwise(bounds))

    def move_groups(self, low: str | None, high: str | None) -> None:
        """New and changed groups with keys in [low, high); groups the read removed go in :meth:`remove_groups`,
        once no membership refers to them."""
        self._upsert("directory_group", "key", low, high)

    def move_people(self, low: str | None, high: str | None) -> None:
        """Identities with keys in [low, high) and the memberships of members with keys in it (after every group
        has moved: memberships refer to the stored group ids)."""
        self._delete_gone("identity", "key", low, high)
        self._upsert("identity", "key", low, high)
        self._move_memberships(low, high)

    def remove_groups(self) -> None:
        self._delete_gone("directory_group", "key", None, None)

    def _range(self, alias: str, column: str, low: str | None, high: str | None) -> tuple[str, list[str]]:
        where, params = "", []
        if low is not None:
            where += f" AND {alias}.{_q(column)} >= ?"
            params.append(low)
        if high is not None:
            where += f" AND {alias}.{_q(column)} < ?"
            params.append(high)
        return where, params

    def _delete_gone(self, table: str, key: str, low: str | None, high: str | None) -> None:
        t, k = _q(table), _q(key)
        where, params = self._range("m", key, low, high)
        self.db.execute_sql(
            f"DELETE FROM main.{t} WHERE id IN (SELECT m.id FROM main.{t} m WHERE m.source_id = ?{where} AND NOT "
            f"EXISTS (SELECT 1 FROM temp.{t} s WHERE s.source_id = m.source_id AND s.{k} = m.{k}))",
            (self.source_id, *params),
        )

    def _upsert(self, table: str, key: str, low: str | None, high: str | None) -> None:
        t, k = _q(table), _q(key)
        copied = [c for c in self._columns[table] if c != "id"]
        where, params = self._range("s", key, low, high)
        changed = " OR ".join(f"s.{_q(c)} IS NOT m.{_q(c)}" for c in copied)
        self.db.execute_sql(
            f"UPDATE main.{t} AS m SET {', '.join(f'{_q(c)} = s.{_q(c)}' for c in copied)} FROM temp.{t} AS s "
            f"WHERE s.source_id = ?{where} AND m.source_id = s.source_id AND m.{k} = s.{k} AND ({changed})",
            (self.source_id, *params),
        )
        columns = ", ".join(map(_q, copied))
        self.db.execute_sql(
            f"INSERT INTO main.{t} ({columns}) SELECT {', '.join(f's.{_q(c)}' for c in copied)} FROM temp.{t} s "
            f"WHERE s.source_id = ?{where} AND NOT EXISTS "
            f"(SELECT 1 FROM main.{t} m WHERE m.source_id = s.source_id AND m.{k} = s.{k})",
            (self.source_id, *params),
        )

    def _move_memberships(self, low: str | None, high: str | None) -> None:
        """The memberships of members with keys in [low, high): staged ones refer to staged group ids, matched to
        the stored groups by key."""
        others = [c for c in self._columns["group_member"] if c not in ("id", "group_id")]
        same = " AND ".join(f"s.{_q(c)} IS m.{_q(c)}" for c in others)
        staged = (
            f"SELECT g.id AS group_id, {', '.join(f's.{_q(c)}' for c in others)} FROM temp.group_member s "
            "JOIN temp.directory_group sg ON sg.id = s.group_id "
            "JOIN main.directory_group g ON g.source_id = sg.source_id AND g.key = sg.key "
            "WHERE s.source_id = ?"
        )
        where_m, params = self._range("m", "member_key", low, high)
        where_s, _ = self._range("s", "member_key", low, high)
        self.db.execute_sql(
            f"DELETE FROM main.group_member WHERE id IN (SELECT m.id FROM main.group_member m WHERE m.source_id = ?"
            f"{where_m} AND NOT EXISTS (SELECT 1 FROM ({staged}{where_s}) s WHERE s.group_id = m.group_id AND {same}))",
            (self.source_id, *params, self.source_id, *params),
        )
        columns = ", ".join(map(_q, ["group_id", *others]))
        self.db.execute_sql(
            f"INSERT INTO main.group_member ({columns}) SELECT {columns} FROM ({staged}{where_s}) s WHERE NOT EXISTS "
            f"(SELECT 1 FROM main.group_member m WHERE m.group_id = s.group_id AND {same})",
            (self.source_id, *params),
        )
