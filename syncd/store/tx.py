"""Write transactions that serialize writers up front, so read-then-write (ledger sequence numbers) never races.

SQLite: ``BEGIN IMMEDIATE`` takes the write lock at the start instead of failing at the first write
(https://www.sqlite.org/lang_transaction.html). PostgreSQL: the per-org row lock is taken where the ledger is
appended (:func:`syncd.sync.ledger.lock_org`). The forms live in :mod:`syncd.store.dialect`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from syncd.store import dialect


def write_transaction() -> AbstractContextManager[Any]:
    """Open a transaction for a change of org state (a savepoint when one is already open)."""
    return dialect.of().write_transaction()
