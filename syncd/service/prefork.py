"""``syncd serve --processes N`` (``[server] processes``): N HTTP processes on one listening socket, opt-in.

One process is bound to one core by the GIL; this mode lets SCIM use more. It stays opt-in by measurement
(``benchmarks/bench_workers.py``, 8 SCIM clients on the same 2 cores, host load average 9-16, figures in
docs/architecture.md, "Running it"): two processes answered lookups faster than the threads on SQLite, not on
PostgreSQL, and PostgreSQL writes slower; a second process pays only with an idle core.

- The supervisor (this process, a :class:`syncd.service.serve.Service`) opens the listening socket, then starts N
  HTTP processes (``python -m syncd.service.prefork``) that inherit it and take connections from it, each with its
  own ``server.workers`` threads and its own database connection. It serves no SCIM: it keeps the scheduler,
  housekeeping, webhook delivery, the metrics listener, systemd notification and the signal loop, and replaces an
  HTTP process that dies.
- SIGTERM: the supervisor stops its scheduler and sends SIGTERM to every HTTP process, which drains its requests
  within ``server.shutdown_timeout``; exit 0 when all drained and no run was abandoned, else 1 (as one process).
- SIGHUP: the supervisor alone reads the file; it validates and declares the config once, as one process does, then
  prepares it in every HTTP process and commits it at one moment for all of them, in the same turn between two
  housekeeping runs as its scheduler takes it (:mod:`syncd.service.prefork_config`): no request fails, every
  request that starts after the commit uses the new config whichever process takes it, and READY=1 and
  ``config.reloaded`` come after the commit.
- /readyz in an HTTP process reports the supervisor's scheduler, which publishes its health to a small file twice a
  second; a file older than :data:`HEALTH_STALE_SECONDS` reads as "not running". ``POST
  /admin/v1/sources/<name>/sync`` runs in the HTTP process under the source's lease, which keeps it from overlapping
  a scheduled run, as between replicas.
- Answers are the same whichever process gives them: run state in the admin API comes from the store (the
  source's lease, :func:`syncd.store.lease.running`), readiness from the supervisor's published health.
- Metrics: the HTTP processes count in prometheus-client's multiprocess files, which the supervisor's /metrics
  adds to its own (:class:`syncd.service.metrics.SummedProcesses`).
- Files: the supervisor's working directory (``$TMPDIR/syncd-serve-<pid namespace>-<pid>-*``: config versions,
  health, metrics files) goes when it stops; one left by a supervisor that was killed is removed by the next start,
  and HTTP processes whose supervisor is gone drain and exit (they watch their parent twice a second), so nothing
  serves without a scheduler.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from cheroot.wsgi import Server

from syncd import logs
from syncd.common.errors import ConfigError
from syncd.config import Config
from syncd.logs import log_event
from syncd.service import metrics
from syncd.service.http_apps import ServiceState
from syncd.service.prefork_config import CommittedConfig, SharedConfig
from syncd.service.scheduler import RunFunction, SourceScheduler
from syncd.service.serve import (
    HANDLED,
    ServeError,
    Service,
    check_reloadable,
    http_server,
    parse_listen,
    wait_signal,
)
from syncd.store import lease, open_database

log = logging.getLogger("syncd.serve")

HEALTH_STALE_SECONDS = 5.0
"""A scheduler health file older than this reads as "not running" (the supervisor rewrites it twice a second)."""
BACKLOG = 1024
_SUPERVISOR_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""sd_notify(3) variables the HTTP processes do not get: only the supervisor speaks to systemd."""
_ENV_FD = "SYNCD_LISTEN_FD"
_ENV_DIR = "SYNCD_PREFORK_DIR"
_ENV_LISTEN = "SYNCD_PREFORK_LISTEN"
_ENV_SUPERVISOR = "SYNCD_PREFORK_SUPERVISOR"
_ENV_RUN = "SYNCD_PREFORK_RUN"
WORKDIR_PREFIX = "syncd-serve-"


class Supervisor(Service):
    """The parent of a pre-fork ``syncd serve``: everything of :class:`Service` except serving HTTP itself."""

    def __init__(
        self,
        config_path: str | None,
        config: Config,
        listen: str,
        run: RunFunction | None,
        metrics_listen: str,
        processes: int,
    ) -> None:
        super().__init__(config_path, config, listen, run, metrics_listen)
        self.processes = processes
        temp = Path(tempfile.gettempdir())
        for left in remove_stale_workdirs(temp):
            log_event(log, "service.workdir.removed", path=str(left), reason="its supervisor is gone")
        self.workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix(os.getpid()), dir=temp))
        (self.workdir / "metrics").mkdir()
        metrics.sum_http_processes(str(self.workdir / "metrics"))
        self.shared = SharedConfig(self.workdir, writer=True)
        self.shared.commit(self.shared.offer(config))
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()
        """Held while an HTTP process starts and while a reload is offered, so that each either starts after the
        offer (and loads it) or gets its SIGHUP."""
        self.listener: socket.socket | None = None
        self._children_clean = True

    def run(self) -> int:
        try:
            return super().run()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _open_listener(self) -> None:
        host, port = parse_listen(self.listen)
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            # As cheroot prepares its own socket: TCP_NODELAY above all, or keep-alive answers wait for delayed ACKs.
            listener = Server.prepare_socket(address, family, kind, proto, nodelay=True, ssl_adapter=None)
            listener.bind(address)
            listener.listen(BACKLOG)
        except OSError as error:
            raise ServeError(
                f"server.listen {self.listen}: cannot listen ({error.strerror or error}); "
                "choose a free address with --listen or [server] listen"
            ) from None
        self.listener = listener

    def _start_http(self) -> tuple[str, int]:
        assert self.listener is not None
        self._publish()
        for _ in range(self.processes):
            self._spawn()
        host, port = self.listener.getsockname()[:2]
        return host, port

    def _spawn(self) -> None:
        """Start one HTTP process. Called from the main thread, whose blocked signals it inherits (signal masks
        survive fork and exec, signal(7)), so a SIGHUP arriving while it starts waits for its loop."""
        assert self.listener is not None
        fd = self.listener.fileno()
        run = self.scheduler.run
        env = {
            **{k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ONLY},
            _ENV_FD: str(fd),
            _ENV_DIR: str(self.workdir),
            _ENV_LISTEN: self.listen,
            _ENV_SUPERVISOR: str(os.getpid()),
            _ENV_RUN: f"{run.__module__}:{run.__qualname__}",
        }
        with self._children_lock:
            child = subprocess.Popen([sys.executable, "-m", "syncd.service.prefork"], pass_fds=(fd,), env=env)
            self.children[child.pid] = child
        log_event(log, "service.http_process.started", child_pid=child.pid)

    def _publish(self) -> None:
        """Write the scheduler's health for the HTTP processes' /readyz (replaced whole, never read half-written)."""
        health = {"healthy": self.scheduler.healthy(), "trouble": self.scheduler.start_trouble()}
        partial = self.workdir / "scheduler.json.new"
        partial.write_text(json.dumps(health), encoding="utf-8")
        os.replace(partial, self.workdir / "scheduler.json")

    def _tick(self) -> None:
        self._publish()
        for pid, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            with self._children_lock:
                del self.children[pid]
            self.shared.forget(pid)
            log_event(log, "service.http_process.replaced", logging.ERROR, child_pid=pid, exit_code=code)
            self._spawn()

    def _hand_over(self, new: Config) -> None:
        """Prepare ``new`` in every HTTP process, then commit it (:mod:`syncd.service.prefork_config`); the caller
        swaps the scheduler's config right after, in the same turn between housekeeping runs."""
        with self._children_lock:
            generation = self.shared.offer(new)
            children = dict(self.children)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):  # reaped by the loop, not yet replaced
                    os.kill(pid, signal.SIGHUP)
        late = self.shared.wait_prepared(generation, children, lambda pid: children[pid].poll() is None)
        if late:
            log_event(
                log,
                "config.reload.late",
                logging.WARNING,
                child_pids=",".join(map(str, late)),
                effect="they load the new config at their next request",
            )
        self.shared.commit(generation)

    def _stop_http(self) -> threading.Thread:
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        if self.listener is not None:
            self.listener.close()
        stopped = threading.Thread(target=self._wait_children, name="http-stop", daemon=True)
        stopped.start()
        return stopped

    def _wait_children(self) -> None:
        for pid, child in self.children.items():
            code = child.wait()
            if code != 0:
                self._children_clean = False
                log_event(log, "service.http_process.stop_failed", logging.ERROR, child_pid=pid, exit_code=code)

    def _http_drained(self, stopped: threading.Thread) -> bool:
        drained = not stopped.is_alive() and self._children_clean
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return drained


def workdir_prefix(pid: int) -> str:
    """A supervisor's working directory is named after its PID namespace and pid, so a later start can tell whether
    it is still in use."""
    return f"{WORKDIR_PREFIX}{lease.pid_namespace()}-{pid}-"


def remove_stale_workdirs(parent: Path) -> list[Path]:
    """Remove the working directories of this user's supervisors that are gone (SIGKILL, the OOM killer and a power
    cut leave them, with their metrics files); one of a live process, of another PID namespace or user stays."""
    removed = []
    namespace = lease.pid_namespace()
    for path in parent.glob(f"{WORKDIR_PREFIX}*-*-*"):
        where, _, rest = path.name.removeprefix(WORKDIR_PREFIX).partition("-")
        pid = rest.partition("-")[0]
        if where != namespace or not pid.isdigit():
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if lease.process_gone(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class PublishedScheduler(SourceScheduler):
    """The scheduler as an HTTP process sees it: never started here, its health read from the supervisor's file;
    run-now still runs here, under the source's lease (:meth:`SourceScheduler.run_now`)."""

    def __init__(self, config: Config, health: Path, run: RunFunction) -> None:
        super().__init__(config, run=run)
        self.health = health

    def _read(self) -> dict[str, object] | None:
        try:
            if time.time() - self.health.stat().st_mtime > HEALTH_STALE_SECONDS:
                return None
            published = json.loads(self.health.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return published if isinstance(published, dict) else None

    def healthy(self) -> bool:
        published = self._read()
        return bool(published and published.get("healthy"))

    def start_trouble(self) -> str | None:
        published = self._read()
        trouble = published.get("trouble") if published else None
        return str(trouble) if trouble else None


class _InheritedListener(Server):
    """cheroot on the socket the supervisor opened. Non-blocking: every process's selector sees a new connection,
    one ``accept()`` wins and the others get EAGAIN, which cheroot takes as "try again"."""

    inherited: socket.socket

    def bind(self, family: int, type: int, proto: int = 0) -> socket.socket:
        self.socket = self.inherited
        return self.inherited

    def prepare(self) -> None:
        super().prepare()
        self.inherited.settimeout(0)


def http_process() -> int:
    """One HTTP process (started by :class:`Supervisor`; its environment says where the socket and files are)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    supervisor = int(os.environ[_ENV_SUPERVISOR])
    workdir = Path(os.environ[_ENV_DIR])
    metrics.count_in(str(workdir / "metrics"))
    logs.tag_process(pid=os.getpid())
    committed = CommittedConfig(SharedConfig(workdir, writer=False))
    config = committed.config
    scheduler = PublishedScheduler(config, workdir / "scheduler.json", run=_run_function(os.environ[_ENV_RUN]))
    state = ServiceState(config=config, scheduler=scheduler)
    committed.on_swap = partial(_take, state)
    logs.configure(config.logging.format, config.logging.level)
    open_database(config.database.url, background_checkpoints=True)
    _InheritedListener.inherited = socket.socket(fileno=int(os.environ[_ENV_FD]))
    server = http_server(os.environ[_ENV_LISTEN], config, state, _InheritedListener)
    server.wsgi_app = committed.middleware(server.wsgi_app)
    server.prepare()
    threading.Thread(target=server.serve, name="http", daemon=True).start()
    log_event(log, "service.http_process.ready")
    in_force = committed.generation
    while True:
        received = wait_signal(0.5)
        if received == signal.SIGHUP:
            _prepare(committed)
        elif received is not None:
            return _drain(state, server, signal.Signals(received).name)
        elif os.getppid() != supervisor:
            return _drain(state, server, "supervisor gone")
        committed.follow()
        if committed.generation != in_force:
            in_force = committed.generation
            _log_swap(committed)


def _run_function(name: str) -> RunFunction:
    """The supervisor's run function (a module-level function, ``module:qualname``), for run-now here."""
    module, _, qualname = name.partition(":")
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found  # type: ignore[return-value]


def _take(state: ServiceState, config: Config) -> None:
    """Put ``config`` in force for this process's requests (called by the first request after a commit)."""
    state.config = config
    assert state.scheduler is not None
    state.scheduler.config = config


def _prepare(committed: CommittedConfig) -> None:
    """Load the config the supervisor offers; one this process cannot take is refused (the running one kept)."""
    try:
        committed.prepare(check_reloadable)
    except (ConfigError, OSError, pickle.UnpicklingError, EOFError) as error:
        log_event(log, "config.reload.refused", logging.ERROR, reason=str(error), kept="running config")


def _log_swap(committed: CommittedConfig) -> None:
    if committed.refused is not None:
        log_event(log, "config.reload.refused", logging.ERROR, reason=committed.refused, kept="running config")
        committed.refused = None
        return
    config = committed.config
    logs.configure(config.logging.format, config.logging.level)
    log_event(log, "config.reloaded", path=str(config.path) if config.path else None, generation=committed.generation)


def _drain(state: ServiceState, server: Server, why: str) -> int:
    """Stop taking connections and let the requests in flight finish within ``server.shutdown_timeout``."""
    state.draining = True
    stopped = threading.Thread(target=server.stop, name="http-stop", daemon=True)
    stopped.start()
    stopped.join(float(state.config.server.shutdown_timeout))
    if stopped.is_alive():
        log_event(log, "service.stop_timeout", logging.ERROR, signal=why, requests_in_flight=True)
        logging.shutdown()
        os._exit(1)
    log_event(log, "service.stopped", signal=why)
    return 0


if __name__ == "__main__":
    sys.exit(http_process())
