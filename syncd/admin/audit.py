"""Reading an org's ledger for an operator: filtered entries in sequence order, the newest N, a member's recent
changes. The chain itself (appending, streaming, verifying, pruning) is :mod:`syncd.sync.ledger`'s; this module only
chooses which entries a reader asks for (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from syncd.store.models import LedgerEntry
from syncd.sync import ledger

MEMBER_PREFIX = "member:"
"""The target prefix of every ledger entry about a member (``member:<match key>``)."""


def entries(org_id: int, *, last: int | None = None, **filters: datetime | str | None) -> Iterator[ledger.StoredEntry]:
    """The org's entries matching ``filters`` (``since``, ``until``, ``actor``, ``action``, ``target`` of
    :func:`syncd.sync.ledger.select_entries`: ``x*`` is a prefix), oldest first; with ``last`` only the newest
    ``last`` of them. Streamed, so memory stays flat at any ledger size."""
    query = ledger.select_entries(org_id, **filters)  # type: ignore[arg-type]
    if last is None:
        return ledger.stream(org_id, query)
    newest = query.order_by(LedgerEntry.seq.desc()).limit(last).tuples()
    return iter(sorted(ledger.StoredEntry(*row) for row in newest))


def member_changes(org_id: int, match_key: str, last: int) -> list[ledger.StoredEntry]:
    """The newest ``last`` entries about one member, newest first (the target matched exactly: a match key may end
    in ``*``)."""
    query = ledger.select_entries(org_id).where(LedgerEntry.target == MEMBER_PREFIX + match_key)
    return [ledger.StoredEntry(*row) for row in query.order_by(LedgerEntry.seq.desc()).limit(last).tuples()]
