"""Each source run in a child process of its own, so that a long sync never slows SCIM down.

Why a process and not a thread: a 100,000-person run is seconds of pure-Python work, and in the same interpreter it
holds the GIL against the HTTP threads (measured with a CPU-bound run in ``syncd serve``: SCIM lookup p99 rose from
~50 ms to ~190 ms). A child process runs on the other core, gives the memory of a big run back to the system when
it ends, and can be killed cleanly when a shutdown times out (the database rolls its open transaction back).

The child is started with the ``spawn`` method (a fresh interpreter: no inherited threads, locks or database
connections, https://docs.python.org/3/library/multiprocessing.html#contexts-and-start-methods), ignores the
signals meant for the service (the parent decides its fate), and exits on its own when the parent dies, so an
orphan never runs past the lease its parent no longer renews. The run function and the config are pickled to it,
so the run function must be a module-level function.

The child first reports that it has started (or why it could not), then the run's result, so the parent tells a run
that never started (counted for /readyz and ``syncd_run_start_failures_in_a_row``) from one that failed. It lowers
its own priority where the sandbox allows and runs at the service's priority where it does not.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Mapping
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from syncd.common.errors import ConnectorError
from syncd.config import Config
from syncd.logs import bound, log_event, redact_text

log = logging.getLogger("syncd.worker")
_context = multiprocessing.get_context("spawn")
# A run is batch work: on a busy host the kernel should prefer the HTTP threads answering IdPs (sched(7), nice).
RUN_NICENESS = 10
_children: dict[int, Any] = {}
_children_lock = threading.Lock()
_priority_noted = False


class RunFailed(Exception):
    """The run raised in its process; the message is its one-line, secret-free error."""


class RunNotStarted(RunFailed):
    """The run process ended or failed before it could start the run (a sandbox refusing a call it needs, an
    import that fails in the fresh interpreter, no memory for a new process): nothing ran."""


def run_in_child(
    run: Any,
    config: Config,
    source_name: str,
    *,
    full: bool,
    actor: str | None,
    now: datetime | None,
    context: Mapping[str, Any],
) -> Any:
    """Call ``run(config, source_name, dry_run=False, full=..., actor=..., now=...)`` in a child process."""
    receiver, sender = _context.Pipe(duplex=False)
    process = _context.Process(
        target=_child,
        args=(sender, run, config, source_name, full, actor, now, dict(context), os.getpid()),
        name=f"syncd-run-{source_name}",
    )
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    process.start()
    # Starting the first child starts multiprocessing's resource tracker, which unblocks SIGINT and SIGTERM in this
    # thread afterwards (bpo-33613); the service takes signals in its main thread only, so restore the mask.
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    sender.close()
    with _children_lock:
        _children[process.pid] = process
    try:
        _wait_started(receiver, process, source_name)
        try:
            kind, value = receiver.recv()
        except EOFError:
            process.join()
            raise RunFailed(
                f"source {source_name}: the run process ended with exit code {process.exitcode} before reporting; "
                "nothing it did was committed unless the log says so"
            ) from None
        process.join()
    finally:
        receiver.close()
        with _children_lock:
            _children.pop(process.pid, None)
    if kind == "ok":
        return value
    raise RunFailed(value)


def _wait_started(receiver: Connection, process: Any, source_name: str) -> None:
    """Wait for the child's first message: it has set itself up and is about to run; raise RunNotStarted if not."""
    global _priority_noted
    try:
        kind, value = receiver.recv()
    except EOFError:
        process.join()
        raise RunNotStarted(
            f"source {source_name}: the run process ended with exit code {process.exitcode} before it started; "
            "see the lines it logged before this one"
        ) from None
    if kind == "not-started":
        process.join()
        raise RunNotStarted(f"source {source_name}: the run process could not start: {value}")
    if value is not None and not _priority_noted:
        _priority_noted = True
        log_event(
            log,
            "source.run.priority_kept",
            reason=value,
            effect="runs share the CPU with SCIM and HTTP at the service's priority",
        )


def kill_all() -> list[str]:
    """SIGKILL every run process (shutdown past its timeout); their open transactions roll back."""
    with _children_lock:
        victims = list(_children.values())
    for process in victims:
        process.kill()
    return [process.name for process in victims]


def _child(
    sender: Connection,
    run: Any,
    config: Config,
    source_name: str,
    full: bool,
    actor: str | None,
    now: datetime | None,
    context: dict[str, Any],
    parent: int,
) -> None:
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        from syncd import logs
        from syncd.store import open_database

        logs.configure(config.logging.format, config.logging.level)
        kept = _lower_priority()
    except Exception as error:
        sender.send(("not-started", redact_text(f"{type(error).__name__}: {_first_line(error)}")))
        sender.close()
        return
    sender.send(("started", kept))
    with bound(**context):
        try:
            db = open_database(config.database.url, background_checkpoints=True)
            result = run(config, source_name, dry_run=False, full=full, actor=actor, now=now)
            db.close()
            sender.send(("ok", result))
        except ConnectorError as error:
            sender.send(("error", redact_text(_first_line(error))))
        except Exception as error:
            log_event(
                log,
                "source.run.crashed",
                logging.ERROR,
                error=f"{type(error).__name__}: {_first_line(error)}",
                traceback=redact_text(" | ".join(traceback.format_exception(error)[-6:]).replace("\n", " ")),
            )
            sender.send(("error", redact_text(f"{type(error).__name__}: {_first_line(error)}")))
        finally:
            sender.close()


def _lower_priority() -> str | None:
    """Lower this process's priority by ``RUN_NICENESS``; None when done, else why it was not.

    Raising one's own niceness needs no privilege (setpriority(2)), but a sandbox may refuse the call itself:
    systemd's ``SystemCallFilter=~@resources`` answers it with EPERM (systemd/syncd.service does, to keep the unit's
    exposure low). The run then goes on at the service's priority rather than not at all.
    """
    try:
        os.nice(RUN_NICENESS)
    except OSError as error:
        return f"setpriority refused ({error.strerror or error}), e.g. by the unit's SystemCallFilter"
    return None


def _exit_with_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(70)
        time.sleep(0.25)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
