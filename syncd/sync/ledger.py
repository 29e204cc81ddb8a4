"""The tamper-evident audit ledger: a per-org SHA-256 hash chain (docs/architecture.md, invariant 3).

Each entry's hash covers the canonical encoding (sorted-key, compact JSON) of its sequence number, time, actor,
action, target, before, after, reason and the previous entry's hash, so editing, deleting, inserting or reordering
any entry breaks the chain at that entry.

Retention (:func:`prune`) deletes a prefix of the chain behind a ``ledger.checkpoint`` entry appended at the head.
The checkpoint's ``after`` names the last pruned entry (``pruned_through_seq``/``pruned_through_hash``) and carries
the latest ``after`` of every target whose history was pruned (``carried``), so that point-in-time answers
(:mod:`syncd.admin.history`) stay whole. :func:`verify` accepts a chain that does not start at seq 1 only when a checkpoint
inside the verified chain accounts for exactly the missing prefix; since that checkpoint is itself hash-linked,
forging one in the middle breaks the link after it.

An unkeyed hash chain cannot show that its newest entries were cut off: compare the head that ``syncd audit verify``
prints with one recorded elsewhere (``--expect-head SEQ:HASH``) to detect truncation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import peewee

from syncd.clock import iso, utcnow
from syncd.store import dialect, sql
from syncd.store.models import LedgerEntry, Organization
from syncd.store.tx import write_transaction
from syncd.sync import outbox

GENESIS_HASH = "0" * 64
CHECKPOINT_ACTION = "ledger.checkpoint"
CHECKPOINT_TARGET = "ledger"
_NOT_CARRIED = ("plan:", CHECKPOINT_TARGET)


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
    """The last sequence number, hash and time of an org's chain, carried while a transaction appends many entries.

    ``at`` keeps time monotonic along the chain: an entry is never stamped earlier than its predecessor (see
    :func:`make_entry`).
    """

    seq: int
    hash: str
    at: datetime | None = None


def lock_org(org_id: int) -> None:
    """Serialize changes of one org's state before reading it: the one org lock, taken by every writer first (so no
    two writers plan from the same stale state and none waits on another in a cycle), under which the chain head is
    read. PostgreSQL: a row lock on the org (``FOR NO KEY UPDATE``: a writer that already inserted rows referencing
    the org, a SCIM write, holds ``FOR KEY SHARE`` on it, which ``FOR UPDATE`` would wait for in a cycle;
    https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-ROWS). SQLite: the write transaction
    already holds the database's single write lock."""
    dialect.of().lock_row(Organization, org_id)


def head(org_id: int, lock: bool = True) -> LedgerHead:
    """Read the org's chain head; inside a write transaction, ``lock`` takes :func:`lock_org` first (pass False
    when the caller already holds it). Composed once: every SCIM write that changes a member reads it."""
    if lock:
        lock_org(org_id)
    last = sql.rows(
        "ledger head",
        lambda: (
            LedgerEntry.select(LedgerEntry.seq, LedgerEntry.hash, LedgerEntry.at)
            .where(LedgerEntry.org == org_id)
            .order_by(LedgerEntry.seq.desc())
            .limit(1)
        ),
        [org_id, 1],
    )
    if not last:
        return LedgerHead(0, GENESIS_HASH)
    seq, digest, at = last[0]
    return LedgerHead(seq, digest, stored_at(at))


def stored_at(value: object) -> datetime | None:
    """A stored ``at`` (a datetime, or SQLite's text from raw SQL) as a datetime; a value that is not a time (an
    edited row) gives None, so it bounds nothing and :func:`verify` names it."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


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
    """Build the next entry's row (advancing ``chain``) without writing it, for bulk inserts.

    Entries are stamped in commit order: ``at`` (default now) is raised to the predecessor's time when it is
    earlier. A run's changes carry the time the run started, but an approval or another writer may have appended
    after that; an auditor reads a chain whose times go backwards as tampering.
    """
    moment = at or utcnow()
    if chain.at is not None and moment < chain.at:
        moment = chain.at
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
    chain.seq, chain.hash, chain.at = seq, digest, moment
    return row


def append(
    org_id: int,
    *,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    announce: bool = True,
) -> LedgerEntry:
    """Append one entry; call inside the write transaction that makes the change it records.

    The change's webhook event is written with it (every ledgered change has one); ``announce=False`` only for a
    caller that writes its own event for the change (the guard's ``plan.*``)."""
    row = make_entry(
        org_id, head(org_id), actor=actor, action=action, target=target, before=before, after=after, reason=reason
    )
    entry = LedgerEntry.create(**row)
    if announce:
        outbox.announce_change(
            org_id,
            action=action,
            target=target,
            before=before,
            after=after,
            reason=reason,
            at=row["at"],
            seq=row["seq"],
        )
    return entry


def insert_rows(rows: list[dict[str, Any]], batch: int = 500) -> None:
    """Insert prepared entries in batches (a 100,000-person first sync writes that many entries)."""
    for start in range(0, len(rows), batch):
        LedgerEntry.insert_many(rows[start : start + batch]).execute()


class LedgerError(Exception):
    """A ledger operation was refused (e.g. pruning a chain that does not verify); the message says what to do."""


class StoredEntry(NamedTuple):
    """One entry as stored: ``before``/``after`` are the canonical JSON texts the hash covers."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    before: str | None
    after: str | None
    reason: str
    prev_hash: str
    hash: str


_COLUMNS = (
    LedgerEntry.seq,
    LedgerEntry.at,
    LedgerEntry.actor,
    LedgerEntry.action,
    LedgerEntry.target,
    LedgerEntry.before,
    LedgerEntry.after,
    LedgerEntry.reason,
    LedgerEntry.prev_hash,
    LedgerEntry.hash,
)


def entry_document(entry: StoredEntry) -> dict[str, Any]:
    """The public shape of an entry (``audit export``/``list --format json``): before/after as JSON values."""
    return {
        "seq": entry.seq,
        "at": iso(entry.at) if isinstance(entry.at, datetime) else str(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "before": json.loads(entry.before) if entry.before is not None else None,
        "after": json.loads(entry.after) if entry.after is not None else None,
        "reason": entry.reason,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def entry_from_document(document: dict[str, Any]) -> StoredEntry:
    """The inverse of :func:`entry_document`, to verify an export away from the database (KeyError/ValueError if
    it is not an entry)."""
    return StoredEntry(
        int(document["seq"]),
        datetime.strptime(document["at"], "%Y-%m-%dT%H:%M:%S.%fZ"),
        str(document["actor"]),
        str(document["action"]),
        str(document["target"]),
        canonical_json(document["before"]),
        canonical_json(document["after"]),
        str(document["reason"]),
        str(document["prev_hash"]),
        str(document["hash"]),
    )


def select_entries(
    org_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> peewee.ModelSelect:
    """An org's entries matching the filters (``since`` inclusive, ``until`` exclusive); ``x*`` matches a prefix."""
    query = LedgerEntry.select(*_COLUMNS).where(LedgerEntry.org == org_id)
    if since is not None:
        query = query.where(LedgerEntry.at >= since)
    if until is not None:
        query = query.where(LedgerEntry.at < until)
    for column, value in ((LedgerEntry.actor, actor), (LedgerEntry.action, action), (LedgerEntry.target, target)):
        if value is None:
            continue
        query = query.where(column.startswith(value[:-1]) if value.endswith("*") else column == value)
    return query


def stream(org_id: int, query: peewee.ModelSelect, batch: int = 2000) -> Iterator[StoredEntry]:
    """Yield the entries of ``query`` (from :func:`select_entries` for ``org_id``) in sequence order.

    psycopg2's default cursor would fetch a whole result into memory, so a million-entry export pages instead,
    each page read with ``.iterator()`` so peewee keeps no row cache either. Pages are bounded seq windows rather
    than ``seq > last LIMIT n``: a bounded range is an index range scan for any planner, even on a table not yet
    analyzed after a 100,000-person first sync. The stream ends at the head as it was when it started.
    """
    high = LedgerEntry.select(peewee.fn.MAX(LedgerEntry.seq)).where(LedgerEntry.org == org_id).scalar()
    low = _first_seq_from(org_id, None, high)
    while low is not None:
        page = query.where(LedgerEntry.seq >= low, LedgerEntry.seq < low + batch)
        for row in page.order_by(LedgerEntry.seq).tuples().iterator():
            yield StoredEntry(*row)
        low = _first_seq_from(org_id, low + batch, high)


def _first_seq_from(org_id: int, low: int | None, high: int | None) -> int | None:
    """The next sequence number present at or after ``low`` (up to ``high``), so gaps cost one probe, not a loop."""
    if high is None:
        return None
    query = LedgerEntry.select(peewee.fn.MIN(LedgerEntry.seq)).where(LedgerEntry.org == org_id, LedgerEntry.seq <= high)
    if low is not None:
        query = query.where(LedgerEntry.seq >= low)
    return query.scalar()


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str = ""
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None


@dataclass
class Anchor:
    """What a checkpoint says was pruned: entries up to ``through_seq``, the last of which hashed ``through_hash``."""

    checkpoint_seq: int
    through_seq: int
    through_hash: str
    pruned_before: str = ""
    carried: dict[str, Any] = field(default_factory=dict)


def anchor_of(entry: StoredEntry) -> Anchor | None:
    """Read a checkpoint entry's claim; an entry that is not a well-formed checkpoint anchors nothing."""
    if entry.action != CHECKPOINT_ACTION or entry.target != CHECKPOINT_TARGET or entry.after is None:
        return None
    try:
        after = json.loads(entry.after)
        return Anchor(
            entry.seq,
            int(after["pruned_through_seq"]),
            str(after["pruned_through_hash"]),
            str(after.get("pruned_before", "")),
            dict(after.get("carried") or {}),
        )
    except (ValueError, KeyError, TypeError):
        return None


def checkpoints(org_id: int) -> list[Anchor]:
    """The org's checkpoints, oldest first (found through the (org, target) index)."""
    query = select_entries(org_id, target=CHECKPOINT_TARGET).where(LedgerEntry.action == CHECKPOINT_ACTION)
    return [a for a in (anchor_of(StoredEntry(*row)) for row in query.order_by(LedgerEntry.seq).tuples()) if a]


def verify(org_id: int, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the org's chain in order; name the first entry whose sequence, link or hash is wrong.

    ``expect_head`` is a (seq, hash) recorded earlier, e.g. from a previous verify: the chain must still reach it
    with that hash, which detects truncation of the newest entries.
    """
    return verify_entries(stream(org_id, select_entries(org_id)), checkpoints(org_id), expect_head)


def verify_entries(
    entries: Iterable[StoredEntry], anchors: list[Anchor], expect_head: tuple[int, str] | None = None
) -> VerifyResult:
    """The chain check itself, on entries in sequence order (from the store or from an export)."""
    iterator = iter(entries)
    first = next(iterator, None)
    if first is None:
        if expect_head is not None:
            return VerifyResult(False, 0, 1, f"the ledger is empty but head {expect_head[0]} was recorded")
        return VerifyResult(True, 0)
    start = first.seq
    if start < 1:
        return VerifyResult(False, 0, start, "sequence numbers start at 1; this entry was inserted", first_seq=start)
    if start == 1 and first.prev_hash != GENESIS_HASH:
        return VerifyResult(False, 0, 1, "the first entry's prev_hash is not the genesis hash", first_seq=1)
    if start != 1:
        claims = [a for a in anchors if a.checkpoint_seq >= start]
        naming = [a for a in claims if a.through_seq == start - 1]
        if not any(a.through_hash == first.prev_hash for a in naming):
            if naming:
                problem = (
                    f"prev_hash is not the hash of entry {start - 1} that checkpoint {naming[0].checkpoint_seq} pruned"
                )
                return VerifyResult(False, 0, start, problem, first_seq=start)
            expected = max([a.through_seq + 1 for a in claims if a.through_seq + 1 < start], default=1)
            problem = f"entries {expected}..{start - 1} are missing and no checkpoint accounts for them"
            return VerifyResult(False, 0, expected, problem, first_seq=start)
    expected_seq, prev, checked = start, first.prev_hash, 0
    seen_head: str | None = None
    last: StoredEntry = first
    for entry in _chain(first, iterator):
        if entry.seq != expected_seq:
            return VerifyResult(
                False, checked, expected_seq, f"missing (found {entry.seq} in its place)", first_seq=start
            )
        if not isinstance(entry.at, datetime):
            return VerifyResult(
                False, checked, entry.seq, f"time is not a timestamp ({str(entry.at)[:40]!r})", first_seq=start
            )
        if entry.prev_hash != prev:
            return VerifyResult(
                False, checked, entry.seq, "prev_hash does not match the previous entry's hash", first_seq=start
            )
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
            return VerifyResult(False, checked, entry.seq, "hash does not match the entry's contents", first_seq=start)
        if expect_head is not None and entry.seq == expect_head[0]:
            seen_head = entry.hash
        prev, last = entry.hash, entry
        expected_seq += 1
        checked += 1
    result = VerifyResult(True, checked, first_seq=start, last_seq=last.seq, head_hash=last.hash)
    if expect_head is not None:
        seq, digest = expect_head
        if seq > last.seq:
            result.ok, result.bad_seq = False, last.seq + 1
            result.problem = f"the chain ends at seq {last.seq} but head {seq} was recorded: newer entries are missing"
        elif seen_head is not None and seen_head != digest:
            result.ok, result.bad_seq = False, seq
            result.problem = "no longer has the recorded head hash (an entry up to the head was rewritten)"
    return result


def _chain(first: StoredEntry, rest: Iterator[StoredEntry]) -> Iterator[StoredEntry]:
    yield first
    yield from rest


@dataclass
class PruneResult:
    pruned: int
    checkpoint_seq: int | None = None
    through_seq: int | None = None


def prune(org_id: int, before: datetime, *, actor: str = "admin:cli", now: datetime | None = None) -> PruneResult:
    """Delete the entries older than ``before`` behind a checkpoint, so the rest of the chain still verifies.

    Only a prefix can go (the chain must stay contiguous): the entries before the first one at or after
    ``before``. The chain is verified first, so pruning never hides evidence of tampering. The checkpoint carries
    the latest ``after`` of every pruned target still needed to answer "who had which role" later.
    """
    moment = now or utcnow()
    if before > moment:
        raise LedgerError(f"--before {iso(before)} is in the future; retention prunes only the past (check the date)")
    result = verify(org_id)
    if not result.ok:
        raise LedgerError(
            f"the ledger does not verify (seq {result.bad_seq}: {result.problem}); "
            "not pruning, as that could hide the evidence; investigate with 'syncd audit verify'"
        )
    if result.first_seq is None:
        return PruneResult(0)
    with write_transaction():
        chain = head(org_id)
        first_kept = (
            LedgerEntry.select(peewee.fn.MIN(LedgerEntry.seq))
            .where(LedgerEntry.org == org_id, LedgerEntry.at >= before)
            .scalar()
        )
        through = (first_kept - 1) if first_kept is not None else chain.seq
        start = result.first_seq
        if through < start:
            return PruneResult(0)
        last_pruned = LedgerEntry.get(LedgerEntry.org == org_id, LedgerEntry.seq == through)
        previous = max(
            (a for a in checkpoints(org_id) if a.through_seq == start - 1), key=lambda a: a.checkpoint_seq, default=None
        )
        carried = dict(previous.carried) if previous else {}
        carried.update(_latest_states(org_id, through))
        pruned = through - start + 1
        row = make_entry(
            org_id,
            chain,
            actor=actor,
            action=CHECKPOINT_ACTION,
            target=CHECKPOINT_TARGET,
            after={
                "pruned_through_seq": through,
                "pruned_through_hash": last_pruned.hash,
                "pruned_entries": pruned,
                "pruned_before": iso(before),
                "carried": carried,
            },
            reason=f"retention: entries before {iso(before)} pruned",
            at=moment,
        )
        LedgerEntry.insert(**row).execute()
        LedgerEntry.delete().where(LedgerEntry.org == org_id, LedgerEntry.seq <= through).execute()
        # The event names the pruned range; the carried states stay in the ledger (they can be large).
        outbox.announce_change(
            org_id,
            action=CHECKPOINT_ACTION,
            target=CHECKPOINT_TARGET,
            before=None,
            after={"pruned_through_seq": through, "pruned_entries": pruned, "pruned_before": iso(before)},
            reason=row["reason"],
            at=row["at"],
            seq=row["seq"],
        )
    return PruneResult(pruned, row["seq"], through)


def _latest_states(org_id: int, through: int) -> dict[str, Any]:
    """The last ``after`` (and its seq and time) of every target among entries up to ``through``."""
    latest = (
        LedgerEntry.select(LedgerEntry.target, peewee.fn.MAX(LedgerEntry.seq).alias("seq"))
        .where(LedgerEntry.org == org_id, LedgerEntry.seq <= through)
        .group_by(LedgerEntry.target)
    )
    query = (
        LedgerEntry.select(LedgerEntry.target, LedgerEntry.seq, LedgerEntry.at, LedgerEntry.after)
        .join(latest, on=(LedgerEntry.target == latest.c.target) & (LedgerEntry.seq == latest.c.seq))
        .where(LedgerEntry.org == org_id)
        .tuples()
    )
    return {
        target: {"seq": seq, "at": iso(at), "after": json.loads(after) if after is not None else None}
        for target, seq, at, after in query.iterator()
        if not target.startswith(_NOT_CARRIED)
    }
