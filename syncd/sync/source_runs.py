"""Source-run bookkeeping: the one owner of a source row's run columns and of "is a full snapshot due".

A run's outcome lives on its ``Source`` row (``last_run_at``, ``last_success_at``, ``last_full_at``,
``last_error``, ``consecutive_failures``, the cursor). The pipeline records what it saw, stamped with the ``now`` it
was given: a committed read with its cursor (:func:`advanced`), a failure in its own transaction (:func:`failed`), a
held plan (:func:`held`). The scheduler settles the runs the pipeline could not record (a crash before it started,
a worker that died) with :func:`settle`, which knows a recorded run by that stamp. ``syncd sources list`` and
``/metrics`` read these columns (docs/architecture.md, "Running it").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from connectors.interface import ReadResult, Snapshot
from syncd.common.redaction import redact
from syncd.config import parse_interval
from syncd.store.models import Source
from syncd.store.tx import write_transaction
from syncd.sync.stage import StageResult


def full_due(row: Source, every: str, now: datetime, where: str = "full_snapshot_every") -> bool:
    """Whether the source's next read must be a full snapshot: never read whole, or the last whole read is at
    least ``every`` (the source's ``full_snapshot_every``) old."""
    if row.last_full_at is None:
        return True
    return now - row.last_full_at >= timedelta(seconds=parse_interval(every, where))


def advanced(row: Source, result: ReadResult, staged: StageResult, now: datetime) -> None:
    """Record a committed read in the run's transaction, moving the cursor with the data it produced; an incomplete
    read keeps the old cursor so nothing is skipped (a blind one moves it: applied, but not a complete view)."""
    values: dict[str, object] = {"last_run_at": now, "last_notes": "\n".join(result.notes) or None}
    if staged.complete:
        values.update(cursor=result.cursor, last_success_at=now, last_error=None, consecutive_failures=0)
        if isinstance(result, Snapshot):
            values["last_full_at"] = now
    elif staged.blind and len(staged.problems) == 1:
        # Applied and the cursor moves on, but the run is not a complete view: someone may have left unseen.
        values.update(cursor=result.cursor, last_error=f"incomplete view: {staged.problems[0]}")
    else:
        shown = staged.problems[0] if staged.problems else "read was incomplete"
        more = f" (+{len(staged.problems) - 1} more)" if len(staged.problems) > 1 else ""
        values.update(
            last_error=f"incomplete read, nothing removed: {shown}{more}",
            consecutive_failures=Source.consecutive_failures + 1,
        )
    Source.update(**values).where(Source.id == row.id).execute()


def failed(row: Source, message: str, now: datetime) -> None:
    """Record a failed run on the source row, in its own transaction (the run's own rolled back)."""
    with write_transaction():
        Source.update(
            last_run_at=now, last_error=redact(message), consecutive_failures=Source.consecutive_failures + 1
        ).where(Source.id == row.id).execute()


def held(row: Source, message: str, now: datetime) -> None:
    """Record that the run's plan was held by the guard (in the caller's transaction)."""
    Source.update(last_run_at=now, last_error=message).where(Source.id == row.id).execute()


def pushed(source_id: int, now: datetime) -> None:
    """Record a pushed source's write (a SCIM source has no runs: each committed write is its last run and last
    success), in the caller's transaction so that it commits only with the write."""
    Source.update(last_success_at=now, last_run_at=now).where(Source.id == source_id).execute()


def settle(name: str, started: datetime, finished: datetime, full: bool, error: str | None, ok: bool) -> Source:
    """Record a run's outcome unless the pipeline did (it stamps ``last_run_at`` with the run's ``started``);
    return the row as it stands after. ``ok`` a run that succeeded; ``error`` the one-line error of a failed one."""
    with write_transaction():
        row = Source.get(Source.name == name)
        if row.last_run_at != started:
            changes: dict[Any, Any] = {Source.last_run_at: started}
            if error is not None:
                changes.update(
                    {Source.consecutive_failures: row.consecutive_failures + 1, Source.last_error: redact(error)}
                )
            elif ok:
                changes.update({Source.consecutive_failures: 0, Source.last_error: None})
                changes[Source.last_success_at] = finished
                if full:
                    changes[Source.last_full_at] = started
            Source.update(changes).where(Source.name == name).execute()
        return Source.get(Source.name == name)
