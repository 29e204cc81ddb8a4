"""The line SQLite writers of every thread and process wait in before ``BEGIN IMMEDIATE``.

SQLite's busy handler does not queue writers: one that finds the write lock taken sleeps 1, 2, 5, 10 ... 100 ms
between retries (``sqliteDefaultBusyCallback``, https://www.sqlite.org/c3ref/busy_timeout.html), so it often wakes
tens of ms after the lock came free. Here a writer first takes a per-process lock (threads hand over at once), then
an ``flock(2)`` of ``<database>-writers`` beside the database (``syncd serve``, its run processes and ``syncd sync``
are separate processes), where the kernel wakes it as the holder lets go. The wait is bounded by the caller (the
connection's busy timeout); a blocking ``flock`` has no timeout, so a contended wait runs in a helper thread.

See docs/architecture.md, "SQL and the two databases".
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

GATE_SUFFIX = "-writers"
IN_MEMORY = ("", ":memory:")

_gates: dict[tuple[int, str], Gate | None] = {}


def of(path: str) -> Gate | None:
    """The gate of the SQLite database file ``path`` in this process; None for an in-memory database or when the
    gate files cannot be opened (a read-only folder): writers then wait in SQLite's busy handler alone. Keyed by
    process id too, so a forked run process never shares its parent's open file (``flock`` locks belong to it)."""
    if path in IN_MEMORY or path.startswith("file::memory:"):
        return None
    key = (os.getpid(), path)
    if key not in _gates:
        _gates.setdefault(key, Gate.open(path))
    return _gates[key]


class _Waiting:
    """A helper thread blocked in ``flock`` for the writer that holds the thread lock."""

    def __init__(self) -> None:
        self.granted = threading.Event()
        self.abandoned = False


class Gate:
    """One database's line of writers in this process (:func:`of`)."""

    def __init__(self, path: str, gate_fd: int) -> None:
        self.path = path
        self._gate_fd = gate_fd
        self._threads = threading.Lock()
        self._state = threading.Lock()
        self._waiting: _Waiting | None = None

    @classmethod
    def open(cls, path: str) -> Gate | None:
        try:
            return cls(path, os.open(path + GATE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError:
            return None

    def acquire(self, timeout: float) -> bool:
        """Wait in line at most ``timeout`` seconds; True when this thread now holds the gate."""
        deadline = time.monotonic() + timeout
        has_threads = self._threads.acquire(blocking=False)
        if has_threads and self._try_file():
            return True
        if not has_threads and not self._threads.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        try:
            if self._lock_file(deadline):
                return True
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        fcntl.flock(self._gate_fd, fcntl.LOCK_UN)
        self._threads.release()

    def _try_file(self) -> bool:
        with self._state:
            if self._waiting is not None:
                return False
            try:
                fcntl.flock(self._gate_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    def _lock_file(self, deadline: float) -> bool:
        with self._state:
            waiting = self._waiting
            if waiting is None:
                try:
                    fcntl.flock(self._gate_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
                waiting = self._waiting = _Waiting()
                threading.Thread(
                    target=self._wait_for_file, args=(waiting,), name="sqlite-writers-gate", daemon=True
                ).start()
            waiting.abandoned = False
        waiting.granted.wait(max(deadline - time.monotonic(), 0.0))
        with self._state:
            if waiting.granted.is_set():
                self._waiting = None
                return True
            waiting.abandoned = True
            return False

    def _wait_for_file(self, waiting: _Waiting) -> None:
        """The helper thread: queue on the file, then hand the lock to the writer, or drop it when the writer gave
        up meanwhile (so no process keeps the gate that nobody uses)."""
        fcntl.flock(self._gate_fd, fcntl.LOCK_EX)
        with self._state:
            if waiting.abandoned:
                fcntl.flock(self._gate_fd, fcntl.LOCK_UN)
                self._waiting = None
            else:
                waiting.granted.set()
