"""The tamper-evident audit ledger: a per-org SHA-256 hash chain (DESIGN.md, invariant 3).

Each entry's hash covers the canonical encoding (sorted-key, compact JSON) of its sequence number, time, actor,
action, target, before, after, reason and the previous entry's hash, so editing, deleting, inserting or reordering
any entry breaks the chain at that entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.clock import iso, utcnow
from syncd.store.db import is_postgres
from syncd.store.models import LedgerEntry, Organization

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str | None:
    """Compact, key-sorted JSON: one text for one value, whatever the dict order."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    before: str | None,
    after: str | None,
    reason: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical encoding of one entry's fields and its predecessor's hash."""
    body = canonical_json(
        {
            "seq": seq,
            "at": iso(at),
            "actor": actor,
            "action": action,
            "target": target,
            "before": before,
            "after": after,
            "reason": reason,
            "prev_hash": prev_hash,
        }
    )
    assert body is not None
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass
class LedgerHead:
    """The last sequence number and hash of an org's chain, carried while a transaction appends many entries."""

    seq: int
    hash: str


def head(org_id: int, lock: bool = True) -> LedgerHead:
    """Read the org's chain head; inside a write transaction, ``lock`` serializes appenders on PostgreSQL."""
    if lock and is_postgres():
        Organization.select(Organization.id).where(Organization.id == org_id).for_update().execute()
    last = (
        LedgerEntry.select(LedgerEntry.seq, LedgerEntry.hash)
        .where(LedgerEntry.org == org_id)
        .order_by(LedgerEntry.seq.desc())
        .limit(1)
        .first()
    )
    return LedgerHead(last.seq, last.hash) if last else LedgerHead(0, GENESIS_HASH)


def make_entry(
    org_id: int,
    chain: LedgerHead,
    *,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    at: datetime | None = None,
) -> dict[str, Any]:
    """Build the next entry's row (advancing ``chain``) without writing it, for bulk inserts."""
    moment = at or utcnow()
    before_text, after_text = canonical_json(before), canonical_json(after)
    seq = chain.seq + 1
    digest = entry_hash(
        seq=seq,
        at=moment,
        actor=actor,
        action=action,
        target=target,
        before=before_text,
        after=after_text,
        reason=reason,
        prev_hash=chain.hash,
    )
    row = {
        "org": org_id,
        "seq": seq,
        "at": moment,
        "actor": actor,
        "action": action,
        "target": target,
        "before": before_text,
        "after": after_text,
        "reason": reason,
        "prev_hash": chain.hash,
        "hash": digest,
    }
    chain.seq, chain.hash = seq, digest
    return row


def append(
    org_id: int, *, actor: str, action: str, target: str, before: Any = None, after: Any = None, reason: str = ""
) -> LedgerEntry:
    """Append one entry; call inside the write transaction that makes the change it records."""
    row = make_entry(
        org_id, head(org_id), actor=actor, action=action, target=target, before=before, after=after, reason=reason
    )
    return LedgerEntry.create(**row)


def insert_rows(rows: list[dict[str, Any]], batch: int = 500) -> None:
    """Insert prepared entries in batches (a 100,000-person first sync writes that many entries)."""
    for start in range(0, len(rows), batch):
        LedgerEntry.insert_many(rows[start : start + batch]).execute()


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str = ""


def verify(org_id: int) -> VerifyResult:
    """Walk the org's chain in order; name the first entry whose sequence, link or hash is wrong."""
    expected_seq: int | None = None
    prev = GENESIS_HASH
    checked = 0
    for entry in _entries_in_order(org_id):
        if expected_seq is None:
            expected_seq = entry.seq if entry.action == "ledger.checkpoint" else 1
        if entry.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"expected seq {expected_seq}, found {entry.seq}")
        if entry.action == "ledger.checkpoint" and checked == 0:
            prev = entry.prev_hash
        if entry.prev_hash != prev:
            return VerifyResult(False, checked, entry.seq, "prev_hash does not match the previous entry's hash")
        digest = entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            before=entry.before,
            after=entry.after,
            reason=entry.reason,
            prev_hash=entry.prev_hash,
        )
        if digest != entry.hash:
            return VerifyResult(False, checked, entry.seq, "hash does not match the entry's contents")
        prev = entry.hash
        expected_seq += 1
        checked += 1
    return VerifyResult(True, checked)


def _entries_in_order(org_id: int) -> Iterator[LedgerEntry]:
    query = LedgerEntry.select().where(LedgerEntry.org == org_id).order_by(LedgerEntry.seq, LedgerEntry.id)
    return query.iterator()
