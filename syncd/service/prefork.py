"""``syncd serve --processes N`` (``[server] processes``): N HTTP processes on one listening socket, opt-in.

One process is bound to one core by the GIL. Measured with ``benchmarks/bench_workers.py`` (8 SCIM clients, 2 cores
shared with other work, load average 6-12, six rounds), this mode with two processes answered SCIM lookups at
1.25-1.72x the threads' rate on SQLite and writes at 0.91-2.57x, SQLite writers of all processes queueing at the
writers' gate (:mod:`syncd.store.write_gate`); before the gate, writes were 0.54-1.28x (busy handler polling). One
process stays the default until a quieter host confirms it (one run on PostgreSQL, before the gate: lookups 1.19x,
writes 0.79x).

- The supervisor (this process, a :class:`syncd.service.serve.Service`) opens the listening socket, then starts N
  HTTP processes (``python -m syncd.service.prefork``) that inherit it and take connections from it, each with its
  own ``server.workers`` threads and its own database connection. It serves no SCIM: it keeps the scheduler,
  housekeeping, webhook delivery, the metrics listener, systemd notification and the signal loop, and replaces an
  HTTP process that dies.
- SIGTERM: the supervisor stops its scheduler and sends SIGTERM to every HTTP process, which drains its requests
  within ``server.shutdown_timeout``; exit 0 when all drained and no run was abandoned, else 1 (as one process).
- SIGHUP: the supervisor validates and declares the config once, as one process does, and once the new config is in
  force for its scheduler (between two housekeeping runs) sends SIGHUP to the HTTP processes, which re-read the same
  file; one that cannot keeps its config and logs ``config.reload.refused``. Between the two swaps a SCIM write may
  still use the old rules for a moment, as on a replica reloaded a moment later.
- /readyz in an HTTP process reports the supervisor's scheduler, which publishes its health to a small file twice a
  second; a file older than :data:`HEALTH_STALE_SECONDS` reads as "not running". ``POST
  /admin/v1/sources/<name>/sync`` runs in the HTTP process under the source's lease, which keeps it from overlapping
  a scheduled run, as between replicas.
- Metrics: the HTTP processes count in prometheus-client's multiprocess files, which the supervisor's /metrics
  adds to its own (:class:`syncd.service.metrics.SummedProcesses`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cheroot.wsgi import Server

from syncd import config as config_module
from syncd import logs
from syncd.common.errors import ConfigError
from syncd.config import Config
from syncd.logs import log_event
from syncd.service import metrics
from syncd.service.http_apps import ServiceState
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
from syncd.store import open_database

log = logging.getLogger("syncd.serve")

HEALTH_STALE_SECONDS = 5.0
"""A scheduler health file older than this reads as "not running" (the supervisor rewrites it twice a second)."""
BACKLOG = 1024
_SUPERVISOR_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""sd_notify(3) variables the HTTP processes do not get: only the supervisor speaks to systemd."""
_ENV_FD = "SYNCD_LISTEN_FD"
_ENV_DIR = "SYNCD_PREFORK_DIR"
_ENV_CONFIG = "SYNCD_PREFORK_CONFIG"
_ENV_LISTEN = "SYNCD_PREFORK_LISTEN"


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
        self.workdir = Path(tempfile.mkdtemp(prefix="syncd-serve-"))
        (self.workdir / "metrics").mkdir()
        metrics.sum_http_processes(str(self.workdir / "metrics"))
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.listener: socket.socket | None = None
        self._children_clean = True

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
        config_path = self.config_path or (str(self.config.path) if self.config.path is not None else "")
        env = {
            **{k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ONLY},
            _ENV_FD: str(fd),
            _ENV_DIR: str(self.workdir),
            _ENV_CONFIG: config_path,
            _ENV_LISTEN: self.listen,
        }
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
            del self.children[pid]
            log_event(log, "service.http_process.replaced", logging.ERROR, child_pid=pid, exit_code=code)
            self._spawn()

    def _swap_pending(self) -> None:
        """Pass a reload on once it is in force for the scheduler, between two housekeeping runs."""
        super()._swap_pending()
        for pid in list(self.children):
            os.kill(pid, signal.SIGHUP)

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


class PublishedScheduler(SourceScheduler):
    """The scheduler as an HTTP process sees it: never started here, its health read from the supervisor's file;
    run-now still runs here, under the source's lease (:meth:`SourceScheduler.run_now`)."""

    def __init__(self, config: Config, health: Path) -> None:
        super().__init__(config)
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
    workdir = Path(os.environ[_ENV_DIR])
    metrics.count_in(str(workdir / "metrics"))
    config_path = os.environ[_ENV_CONFIG] or None
    supervisor = os.getppid()
    config = config_module.load(config_path)
    logs.configure(config.logging.format, config.logging.level)
    logs.tag_process(pid=os.getpid())
    open_database(config.database.url)
    state = ServiceState(config=config, scheduler=PublishedScheduler(config, workdir / "scheduler.json"))
    _InheritedListener.inherited = socket.socket(fileno=int(os.environ[_ENV_FD]))
    server = http_server(os.environ[_ENV_LISTEN], config, state, _InheritedListener)
    server.prepare()
    threading.Thread(target=server.serve, name="http", daemon=True).start()
    log_event(log, "service.http_process.ready")
    while True:
        received = wait_signal(0.5)
        if received == signal.SIGHUP:
            _reload(state, config_path)
        elif received is not None:
            return _drain(state, server, signal.Signals(received).name)
        elif os.getppid() != supervisor:
            return _drain(state, server, "supervisor gone")


def _reload(state: ServiceState, config_path: str | None) -> None:
    """Take the config the supervisor has just declared; keep the running one if this process cannot read it."""
    try:
        new = config_module.load(config_path)
        check_reloadable(state.config, new)
    except (ConfigError, OSError) as error:
        log_event(
            log, "config.reload.refused", logging.ERROR, path=config_path, reason=str(error), kept="running config"
        )
        return
    state.config = new
    assert state.scheduler is not None
    state.scheduler.config = new
    logs.configure(new.logging.format, new.logging.level)
    log_event(log, "config.reloaded", path=config_path)


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
