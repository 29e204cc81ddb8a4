"""The few SQL forms that differ between SQLite and PostgreSQL, for filters compiled to SQL.

SCIM resources keep the attributes that have no column in the ``resource`` JSON text column; filters on them read
it with SQLite's JSON1 functions (https://www.sqlite.org/json1.html) or PostgreSQL's jsonb operators
(https://www.postgresql.org/docs/current/functions-json.html). String comparisons fold case the way scim2-models'
``default_comparison_key`` does (NFC, then lower case): on SQLite through a registered function, on PostgreSQL
with ``lower(normalize(...))``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import peewee
from peewee import SQL, NodeList, fn

from syncd.store.db import database

FOLD_FUNCTION = "scim_fold"


def fold(value: str | None) -> str | None:
    """scim2-models' default comparison key: NFC, lower case, NFC again."""
    if value is None:
        return None
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def register_functions(db: peewee.Database) -> None:
    """Give SQLite the case folding PostgreSQL does natively (idempotent)."""
    if isinstance(db, peewee.SqliteDatabase) and FOLD_FUNCTION not in db._functions:
        db.register_function(fold, FOLD_FUNCTION, 1, deterministic=True)


class Dialect:
    """Builds the backend-specific SQL nodes; one per query, for the database bound to the store."""

    def __init__(self) -> None:
        db = database.obj
        self.postgres = isinstance(db, peewee.PostgresqlDatabase)
        self.param = db.param

    # -- JSON --------------------------------------------------------------

    def _sqlite_path(self, keys: Sequence[str]) -> str:
        return "$" + "".join('."' + key.replace('"', '""') + '"' for key in keys)

    def json_value(self, column: peewee.Node, keys: Sequence[str]) -> peewee.Node:
        """The scalar at ``keys`` inside a JSON text column (text for strings; NULL when absent)."""
        if self.postgres:
            return NodeList((SQL("(CAST("), column, SQL(f" AS jsonb) #>> {self.param})", [list(keys)])), glue="")
        return fn.json_extract(column, self._sqlite_path(keys))

    def json_type(self, column: peewee.Node, keys: Sequence[str]) -> peewee.Node:
        """The JSON type name at ``keys`` ('object', 'array', 'text'/'string', ...) or NULL."""
        if self.postgres:
            return NodeList(
                (SQL("jsonb_typeof(CAST("), column, SQL(f" AS jsonb) #> {self.param})", [list(keys)])), glue=""
            )
        return fn.json_type(column, self._sqlite_path(keys))

    def element_value(self, keys: Sequence[str]) -> peewee.Node:
        """The scalar at ``keys`` inside the current array element (inside :meth:`exists_element`)."""
        if self.postgres:
            if not keys:
                return SQL("(e.v #>> '{}')")
            return SQL(f"(e.v #>> {self.param})", [list(keys)])
        if not keys:
            return SQL("e.value")
        return SQL(f"json_extract(e.value, {self.param})", [self._sqlite_path(keys)])

    def exists_element(self, column: peewee.Node, keys: Sequence[str], condition: peewee.Node) -> peewee.Node:
        """EXISTS an element of the JSON array at ``keys`` satisfying ``condition`` (built on element_value)."""
        if self.postgres:
            p = self.param
            return NodeList(
                (
                    SQL("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(CAST("),
                    column,
                    SQL(f" AS jsonb) #> {p}) = 'array' THEN CAST(", [list(keys)]),
                    column,
                    SQL(f" AS jsonb) #> {p} ELSE '[]'::jsonb END) AS e(v) WHERE ", [list(keys)]),
                    condition,
                    SQL(")"),
                ),
                glue="",
            )
        return NodeList(
            (
                SQL("EXISTS (SELECT 1 FROM json_each("),
                column,
                SQL(f", {self.param}) AS e WHERE ", [self._sqlite_path(keys)]),
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

    # -- strings -----------------------------------------------------------

    def fold(self, node: peewee.Node) -> peewee.Node:
        if self.postgres:
            return fn.lower(fn.normalize(node))
        return getattr(fn, FOLD_FUNCTION)(node)

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
