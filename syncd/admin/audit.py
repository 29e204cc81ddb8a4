"""Reading an org's ledger for an operator: filtered entries in sequence order, the newest N, a member's recent
changes, and an exported ledger read back from its file to be verified. The chain itself (appending, streaming,
verifying, pruning) is :mod:`syncd.sync.ledger`'s; this module chooses which entries a reader asks for and reads
export files (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from syncd.store.models import LedgerEntry
from syncd.sync import ledger

MEMBER_PREFIX = "member:"
"""The target prefix of every ledger entry about a member (``member:<match key>``)."""
EXPORT_FIELDS = ("seq", "at", "actor", "action", "target", "before", "after", "reason", "prev_hash", "hash")
"""The fields of an exported entry (``syncd audit export``), in the CSV's column order."""


class AuditError(Exception):
    """A file is not a ledger export that can be verified; the message says what to give instead."""


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


def verify_export(path: str, expect_head: tuple[int, str] | None = None) -> ledger.VerifyResult:
    """Verify the chain of an unfiltered ``audit export --format jsonl|json`` file, away from the database (its
    checkpoint entries anchor a pruned chain as the stored ones do)."""
    return ledger.verify_entries(_file_entries(path), _file_anchors(path), expect_head)


def _file_documents(path: str) -> Iterator[tuple[int, Any]]:
    """(line or index, document) for each entry of a jsonl export (streamed) or a json export (one array)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.read(1)
            while first.isspace():
                first = handle.read(1)
            handle.seek(0)
            if first not in ("[", "{", ""):
                raise AuditError(
                    f"{path}: not a json or jsonl export; only 'syncd audit export --format jsonl' (or json) files can "
                    "be verified (csv is for spreadsheets and does not keep the exact values the hashes cover)"
                )
            if first == "[":
                try:
                    array = json.load(handle)
                except json.JSONDecodeError as error:
                    raise AuditError(f"{path}: not valid JSON at line {error.lineno} ({error.msg})") from None
                yield from enumerate(array, start=1)
                return
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as error:
                        raise AuditError(f"{path} line {number}: not valid JSON ({error.msg})") from None
    except OSError as error:
        raise AuditError(f"{path}: cannot read it ({error.strerror}); give an 'audit export' file") from None
    except UnicodeDecodeError:
        raise AuditError(f"{path}: not UTF-8 text, so not an 'audit export --format jsonl' (or json) file") from None


def _file_entries(path: str) -> Iterator[ledger.StoredEntry]:
    for number, document in _file_documents(path):
        try:
            yield ledger.entry_from_document(document)
        except (KeyError, ValueError, TypeError):
            raise AuditError(f"{path} entry {number}: not a ledger entry (needs {', '.join(EXPORT_FIELDS)})") from None


def _file_anchors(path: str) -> list[ledger.Anchor]:
    anchors = []
    for entry in _file_entries(path):
        anchor = ledger.anchor_of(entry) if entry.action == ledger.CHECKPOINT_ACTION else None
        if anchor is not None:
            anchors.append(anchor)
    return anchors
