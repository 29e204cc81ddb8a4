"""The one mechanism for SQL on hot paths: statements composed once, bulk writes, raw reads, chunked key lists.

peewee spends about 0.2 ms composing the text of even a one-row SELECT, while SQLite answers it in microseconds;
a SCIM write runs a dozen such statements and a 100,000-person first sync hundreds of thousands of rows, so the
text of a hot statement is composed once per database kind and then run with fresh parameters, and many rows go
to the driver in one call. Ordinary queries stay peewee. A statement is either

- a peewee query (:func:`execute`, :func:`rows`): composed on first use for each database kind and parameter
  count; the parameters of that first composition are checked against the ones the caller passes, so a cached text
  can never be run with its parameters in the wrong order; or
- text written against the dialect (:func:`written`): for the few forms peewee does not compose cheaply (an
  ``IN`` list of a given length, ``ON CONFLICT DO NOTHING``), composed once per database kind and name.

Every SQLite/PostgreSQL difference comes from :mod:`syncd.store.dialect`. See docs/architecture.md, "Layers".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import peewee

from syncd.store import dialect
from syncd.store.db import database

BATCH = 500
"""Keys per ``IN (...)`` list: far below SQLite's and PostgreSQL's parameter limits."""

_TEXT: dict[tuple[type, str, int], str] = {}
_WRITTEN: dict[tuple[type, Hashable], str] = {}


# -- statements composed once ---------------------------------------------------------------------------------------


def text(name: str, compose: Callable[[], peewee.Query], params: Sequence[Any]) -> str:
    """The SQL of statement ``name`` for ``len(params)`` parameters; ``compose()`` builds it (with these
    parameters) the first time only."""
    key = (type(database.obj), name, len(params))
    sql = _TEXT.get(key)
    if sql is None:
        sql, composed = compose().sql()
        if list(composed) != list(params):
            raise RuntimeError(f"statement {name}: composed parameters {composed!r} differ from {list(params)!r}")
        _TEXT[key] = sql
    return sql


def execute(name: str, compose: Callable[[], peewee.Query], params: Sequence[Any]) -> Any:
    """Run statement ``name`` with ``params``; return the driver's cursor."""
    return database.obj.execute_sql(text(name, compose, params), tuple(params))


def rows(name: str, compose: Callable[[], peewee.Query], params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of statement ``name`` as the driver returns them (see :func:`raw_rows` for what that means per
    column type)."""
    return list(execute(name, compose, params).fetchall())


def written(name: Hashable, write: Callable[[dialect.Dialect], str]) -> str:
    """The text of a hand-written statement, ``write(dialect)`` called once per database kind and ``name`` (any
    hashable key: a name, or a tuple naming the shape, such as the columns or the length of an ``IN`` list)."""
    key = (type(database.obj), name)
    sql = _WRITTEN.get(key)
    if sql is None:
        sql = _WRITTEN[key] = write(dialect.of())
    return sql


def run(sql: str, params: Sequence[Any]) -> Any:
    """Run a statement text from :func:`written`; return the driver's cursor."""
    return database.obj.execute_sql(sql, tuple(params))


# -- reads ----------------------------------------------------------------------------------------------------------


def raw_rows(query: peewee.Query) -> Iterator[tuple[Any, ...]]:
    """The query's rows straight from the driver, without peewee's per-value conversion (a third of a no-op
    re-sync at 100,000 people). Use for columns whose raw values compare correctly: text, integers, booleans
    (SQLite's 0/1 equal False/True); convert dates with the field's ``python_value`` or
    :func:`syncd.store.dialect.stored_time`."""
    cursor = database.obj.execute(query)
    while True:
        batch = cursor.fetchmany(2000)
        if not batch:
            return
        yield from batch


def batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size`` (an ``IN`` list each)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def keys_in(name: Hashable, head: str, head_params: Sequence[Any], keys: Sequence[Any]) -> list[Any]:
    """The first column of ``head`` (a statement text with ``{marks}`` where the ``IN`` list goes) for ``keys``,
    in chunks of :data:`BATCH`; each chunk length's text is composed once."""
    found: list[Any] = []
    for chunk in batches(keys):
        sql = written((name, len(chunk)), functools.partial(_fill, head, len(chunk)))
        found.extend(row[0] for row in run(sql, (*head_params, *chunk)).fetchall())
    return found


def rows_in(
    name: Hashable,
    table: str,
    columns: Sequence[str],
    where: Sequence[str],
    params: Sequence[Any],
    key: str,
    keys: Iterable[Any],
) -> Iterator[tuple[Any, ...]]:
    """The ``columns`` of ``table``'s rows whose ``where`` columns equal ``params`` and whose ``key`` column is one
    of ``keys``, in chunks of :data:`BATCH`; each chunk length's text is composed once per database kind (peewee
    composing an ``IN`` list of 500 cost more than SQLite answering it)."""
    for chunk in batches(keys):
        sql = written((name, len(chunk)), functools.partial(_select_in, table, columns, where, key, len(chunk)))
        yield from run(sql, (*params, *chunk)).fetchall()


def _select_in(
    table: str, columns: Sequence[str], where: Sequence[str], key: str, count: int, d: dialect.Dialect
) -> str:
    conditions = [f"{d.quote(column)} = {d.param}" for column in where] + [f"{d.quote(key)} IN ({d.marks(count)})"]
    shown = ", ".join(d.quote(column) for column in columns)
    return f"SELECT {shown} FROM {d.quote(table)} WHERE {' AND '.join(conditions)}"


def _fill(head: str, count: int, d: dialect.Dialect) -> str:
    return head.format(p=d.param, marks=d.marks(count))


# -- many rows ------------------------------------------------------------------------------------------------------

_PLAIN_FIELDS = (
    peewee.CharField,
    peewee.TextField,
    peewee.IntegerField,
    peewee.BooleanField,
    peewee.ForeignKeyField,
)


def insert_many(model: type[peewee.Model], fields: list[peewee.Field], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows with one prepared statement (:meth:`~syncd.store.dialect.Dialect.insert_rows`). Peewee's
    own insert_many builds SQL value by value, which dominated a 100,000-person first sync."""
    if not rows:
        return
    given = {f.name for f in fields}
    # Columns left out take the model's default, as peewee's insert would give them.
    defaults = [
        f for f in model._meta.sorted_fields if f.name not in given and not f.primary_key and f.default is not None
    ]
    # A callable default (a random id) is called per row, as peewee's insert does; a constant is shared.
    makers = [f.default if callable(f.default) else (lambda value=f.default: value) for f in defaults]
    every = [*fields, *defaults]
    # Text, numbers, booleans and row ids go to the driver as they are; only dates need peewee's conversion.
    convert = [i for i, f in enumerate(every) if not isinstance(f, _PLAIN_FIELDS)]
    converted: list[tuple[Any, ...]] = []
    for row in rows:
        full = [*row, *(make() for make in makers)]
        for i in convert:
            full[i] = every[i].db_value(full[i])
        converted.append(tuple(full))
    dialect.of().insert_rows(model._meta.table_name, [f.column_name for f in every], converted)


def update_many(
    model: type[peewee.Model], names: tuple[str, ...], rows: list[tuple[Any, ...]], bump_version: bool = False
) -> None:
    """Run one prepared ``UPDATE ... WHERE id = ?`` for many rows: each row holds the values of ``names`` then the
    row id. Both drivers batch this far faster than one ORM save per row."""
    if not rows:
        return
    d = dialect.of()
    assignments = ", ".join(f"{d.quote(n)} = {d.param}" for n in names)
    if bump_version:
        assignments += f", {d.quote('version')} = {d.quote('version')} + 1"
    sql = f"UPDATE {d.quote(model._meta.table_name)} SET {assignments} WHERE {d.quote('id')} = {d.param}"
    fields = [model._meta.fields[n] for n in names]
    converted = [(*(f.db_value(v) for f, v in zip(fields, row[:-1], strict=True)), row[-1]) for row in rows]
    d.execute_many(sql, converted)


def execute_many(sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One statement text for many parameter rows (:meth:`~syncd.store.dialect.Dialect.execute_many`)."""
    dialect.of().execute_many(sql, rows)
