"""Write transactions that serialize writers up front, so read-then-write (ledger sequence numbers) never races.

SQLite: ``BEGIN IMMEDIATE`` takes the write lock at the start instead of failing at the first write
(https://www.sqlite.org/lang_transaction.html). PostgreSQL: the per-org row lock is taken where the ledger is
appended (:func:`syncd.sync.ledger.append`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import peewee

from syncd.store.db import database


def write_transaction() -> AbstractContextManager[Any]:
    """Open a transaction for a change of org state (a savepoint when one is already open)."""
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase) and not db.in_transaction():
        return db.atomic(lock_type="IMMEDIATE")
    return db.atomic()
