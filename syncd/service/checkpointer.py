"""The WAL checkpointer of ``syncd serve`` on SQLite: one thread copies the write-ahead log into the database file.

Every connection of serve's processes runs with ``wal_autocheckpoint`` 0 (:func:`syncd.store.open_database`), so no
commit (a SCIM write, a run's batch) pays for copying the WAL, as the committing connection otherwise does once the
WAL passes 1,000 pages (https://www.sqlite.org/wal.html#automatic_checkpoint). Instead this thread, in the process
that runs the scheduler, checkpoints on its own connection:

- every :data:`EVERY_SECONDS`, ``PASSIVE``: copies what no reader still needs, never waits, never blocks a reader or
  writer; once all of the WAL is copied, the next writer starts it over from the beginning, so the WAL stays about as
  large as what is committed between two ticks;
- when the WAL has not grown since the last tick and is all copied, ``TRUNCATE`` without waiting (it gives up at
  once when a reader or writer is in the way) empties the WAL file;
- on stop (SIGTERM, after requests and runs drained), a last checkpoint of both kinds.

One ``store.checkpoint`` line reports the pages copied since the last one (and the largest WAL seen, in pages) when
the WAL file was emptied, at stop, and at least every :data:`REPORT_EVERY_SECONDS` while pages are copied. On
PostgreSQL there is nothing to do: no thread is started. See docs/architecture.md, "SQL and the two databases".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import peewee

from syncd.logs import log_event
from syncd.store import dialect
from syncd.store.db import database
from syncd.store.dialect import WalCheckpoint

log = logging.getLogger("syncd.store")

EVERY_SECONDS = 1.0
REPORT_EVERY_SECONDS = 60.0


class Checkpointer:
    """The background WAL checkpoint of one ``syncd serve`` (see the module docstring); :meth:`start` and
    :meth:`stop` bracket the service."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = WalCheckpoint(busy=False, wal_pages=0, checkpointed=0)
        self._pages = 0
        self._wal_max = 0
        self._reported_at = time.monotonic()
        self._failing = False

    def start(self) -> None:
        """Start the thread, on SQLite only."""
        if not dialect.of().checkpoints_wal:
            return
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Checkpoint a last time and end the thread (waits at most ``timeout`` seconds)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._guarded(self._started)
            while not self._stopping.wait(EVERY_SECONDS):
                self._guarded(self._tick)
            self._guarded(self._final)
        finally:
            database.obj.close()

    def _started(self) -> None:
        pages = dialect.of().autocheckpoint_pages()
        log_event(log, "store.checkpointer.started", every_s=EVERY_SECONDS, autocheckpoint=pages)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step; a failure (the disk, a lock held too long) is logged once until a step succeeds again."""
        try:
            step()
        except peewee.PeeweeException as error:
            if not self._failing:
                log_event(log, "store.checkpoint.failed", logging.WARNING, error=str(error).strip().splitlines()[0])
            self._failing = True
        else:
            self._failing = False

    def _tick(self) -> None:
        grown_since = self._last.wal_pages
        result = self._passive()
        copied_all = not result.busy and 0 < result.checkpointed == result.wal_pages
        if copied_all and result.wal_pages == grown_since and self._truncate():
            self._report("truncate")
            return
        if self._pages and time.monotonic() - self._reported_at >= REPORT_EVERY_SECONDS:
            self._report("passive")

    def _final(self) -> None:
        self._passive()
        self._report("final", wal_emptied=self._truncate())

    def _truncate(self) -> bool:
        """Empty the WAL file unless a reader or writer is in the way; whether it was emptied."""
        if dialect.of().checkpoint_wal("TRUNCATE", wait=False).busy:
            return False
        self._last = WalCheckpoint(busy=False, wal_pages=0, checkpointed=0)
        return True

    def _passive(self) -> WalCheckpoint:
        """A PASSIVE checkpoint, counting the pages it copied: the copied count grows within one WAL and starts
        again from 0 when a writer starts the WAL over (then the WAL holds fewer pages than at the last tick)."""
        result = dialect.of().checkpoint_wal("PASSIVE", wait=True)
        restarted = result.wal_pages < self._last.wal_pages
        self._pages += max(0, result.checkpointed - (0 if restarted else self._last.checkpointed))
        self._wal_max = max(self._wal_max, result.wal_pages)
        self._last = result
        return result

    def _report(self, mode: str, **more: object) -> None:
        log_event(log, "store.checkpoint", mode=mode, pages=self._pages, wal_pages_max=self._wal_max, **more)
        self._pages = 0
        self._wal_max = 0
        self._reported_at = time.monotonic()
