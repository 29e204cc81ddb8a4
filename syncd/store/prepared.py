"""Statements composed once per database kind, then run with fresh parameters: the hot path of SCIM writes.

peewee spends about 0.2 ms composing the text of even a one-row SELECT, while SQLite answers it in microseconds;
reconciling the member a SCIM write touched runs a dozen such statements, so composing them dominated its cost
(``syncd/admin/tokens.py`` and ``scim/statements.py`` do the same for the token lookup and the SCIM user statements).
A statement is still written as a peewee query, composed on first use for each database kind and parameter count;
the text is cached, and the parameters of that first composition are checked against the ones the caller passes,
so a cached text can never be run with its parameters in the wrong order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import peewee

from syncd.store.db import database

_TEXT: dict[tuple[type, str, int], str] = {}


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
    """The rows of statement ``name`` as the driver returns them (see ``syncd.sync.stage.raw_rows`` for what that
    means per column type)."""
    return list(execute(name, compose, params).fetchall())
