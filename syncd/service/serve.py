"""``syncd serve``: HTTP (SCIM, admin API, health, metrics) and the scheduler in one process, run as a service.

The WSGI server is cheroot (CherryPy's server), in this process with a pool of worker threads. It was chosen by
measurement (``benchmarks/bench_wsgi_servers.py``): on the 2-core build machine it served ~3,700 trivial and
~1,200 token-lookup requests/s with p99 under 10 ms, on par with waitress and ahead of gunicorn with one gthread
worker; gunicorn with two worker processes doubles the DB-lookup rate, but forking workers would need the scheduler
in a separate process, Prometheus' multiprocess mode and cross-process reload, for a throughput that IdP SCIM
traffic is orders of magnitude below. Scale-out is by replicas (PostgreSQL leases), and cheroot gives a
programmatic, graceful ``stop()`` that drains its worker threads within a timeout.

A pre-fork mode (HTTP processes taking connections from one listening socket, each with its own database
connection) is opt-in: ``[server] processes`` or ``--processes N`` (:mod:`syncd.service.prefork`, where a
:class:`Service` that serves no HTTP itself supervises them); measured against these threads at 8 SCIM clients
(``benchmarks/bench_workers.py``) it wins on lookups only with an idle core and on SQLite, so one process stays the
default (figures in docs/architecture.md, "Running it").

Signals (systemd.kill(5), sd_notify(3)) are taken synchronously by the main thread with ``sigtimedwait`` (they are
blocked in every other thread), so no handler runs in the middle of other code; one that still reaches another
thread (a library may unblock them there) is caught by a handler that only queues it for the same loop (with
``--processes N`` the supervisor's loop, which passes them on to its HTTP processes):

- SIGTERM/SIGINT: stop taking work (the scheduler fires nothing more, /readyz says draining, the listener closes),
  let in-flight requests and source runs finish, exit 0; when ``server.shutdown_timeout`` passes first the process
  exits 1 and the database rolls back the open transaction, so a run is applied entirely or not at all; the run's
  lease is released with no cooldown, so the restarted service redoes it at once. After a drain in time, SQLite's
  WAL is checkpointed a last time (:mod:`syncd.service.checkpointer`, which checkpoints it while serve runs).
- SIGHUP: reload the config; new, changed and removed sources are rescheduled. An invalid config is refused with
  one log line and the running one is kept, in the store too: the whole config is checked before any of it is
  declared, and it is declared in one transaction (:func:`syncd.admin.shell.declare`). The new config takes
  effect for the scheduler and SCIM at once, between two housekeeping runs of an org, so a whole-org plan made with
  the old rules never commits after a SCIM write made with the new ones. Settings read only at start
  (:data:`RESTART_ONLY`: listeners, processes, threads, periodic jobs' periods) keep their running values, one
  ``config.reload.restart_needed`` line per changed one.
- READY=1 once the store is migrated and the listener accepts; WATCHDOG=1 while the scheduler's heartbeat is fresh.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import peewee
from cheroot.wsgi import Server

from syncd import config as config_module
from syncd import logs
from syncd.admin import shell
from syncd.common.errors import ConfigError
from syncd.config import Config
from syncd.logs import log_event
from syncd.service import metrics
from syncd.service.checkpointer import Checkpointer
from syncd.service.http_apps import ServiceState, create_app, create_metrics_app
from syncd.service.notify import notify, watchdog_interval
from syncd.service.scheduler import RunFunction, SourceScheduler
from syncd.store import open_database, upgrade
from syncd.store.db import UNREACHABLE, unavailable
from syncd.store.lease import declaration_lock

log = logging.getLogger("syncd.serve")

SWAP_WAIT_SECONDS = 1.0
"""How long a reload waits in the signal loop for a housekeeping run to end before leaving the swap to a thread."""
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ServeError(Exception):
    """The service cannot start; the message says what to fix."""


def parse_listen(text: str, key: str = "server.listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) → (host, port)."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT like 127.0.0.1:8080, got {text!r}")
    return host, int(port)


def check_listen(text: str, key: str = "--listen", flag: str = "--listen") -> tuple[str, int]:
    """Refuse an address that cannot be served before anything is printed or set up: ``HOST:PORT`` must parse and
    the port must be free to bind (a probe with ``SO_REUSEADDR``, as cheroot binds, so a port in TIME_WAIT passes)."""
    host, port = parse_listen(text, key)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ServeError(f"{key} {text}: unknown host {host!r} ({error.strerror}); use e.g. 127.0.0.1:8080") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ServeError(
                f"{key} {text}: cannot listen ({error.strerror or error}); another program may use the port: "
                f"choose another with {flag} HOST:PORT"
            ) from None
    return host, port


class Service:
    """One running ``syncd serve``: store, scheduler, HTTP server and the signal loop that drives them."""

    def __init__(
        self, config_path: str | None, config: Config, listen: str, run: RunFunction | None, metrics_listen: str = ""
    ) -> None:
        self.config_path = config_path or os.environ.get("SYNCD_CONFIG")
        self.config = config
        self.started_with = config
        """The config at start: what the settings a reload cannot change (:data:`RESTART_ONLY`) still hold."""
        self.listen = listen
        self.metrics_listen = metrics_listen
        self.scheduler = SourceScheduler(config, run=run)
        self.state = ServiceState(config=config, scheduler=self.scheduler)
        self._pending: Config | None = None
        self._pending_lock = threading.Lock()
        self.server = http_server(listen, config, self.state)
        self.metrics_server = _metrics_server(config, self.state, metrics_listen) if metrics_listen else None
        self.checkpointer = Checkpointer()
        self._leaked: list[int] = []

    def run(self) -> int:
        self._open_listener()
        if self.metrics_server is not None:
            try:
                self.metrics_server.prepare()
            except OSError as error:
                raise ServeError(
                    f"server.metrics_listen {self.metrics_listen}: cannot listen ({error.strerror or error}); "
                    "choose a free address with --metrics-listen or [server] metrics_listen"
                ) from None
            threading.Thread(target=self.metrics_server.serve, name="metrics", daemon=True).start()
            log_event(
                log,
                "metrics.listening",
                listen=self.metrics_listen,
                bearer_required=self.config.server.metrics_token_file is not None,
            )
        for number in HANDLED:
            signal.signal(number, self._leak)
        self.scheduler.start()
        self.checkpointer.start()
        host, port = self._start_http()
        notify("READY=1", f"STATUS=serving on {host}:{port}, {len(self.config.sources)} sources")
        log_event(log, "service.ready", listen=f"{host}:{port}", owner=self.scheduler.owner, pid=os.getpid())
        try:
            return self._loop()
        except BaseException:
            self.scheduler.abandon()  # an unexpected end: leave no lease named after this process
            raise

    def _open_listener(self) -> None:
        try:
            self.server.prepare()
        except OSError as error:
            raise ServeError(
                f"server.listen {self.listen}: cannot listen ({error.strerror or error}); "
                "choose a free address with --listen or [server] listen"
            ) from None

    def _start_http(self) -> tuple[str, int]:
        """Start serving HTTP; returns the address served."""
        threading.Thread(target=self.server.serve, name="http", daemon=True).start()
        host, port = self.server.bind_addr[:2]
        return host, port

    def _stop_http(self) -> threading.Thread:
        """Stop taking connections and drain the requests in flight; the thread returned ends when that is done."""
        stopped = threading.Thread(target=self.server.stop, name="http-stop", daemon=True)
        stopped.start()
        return stopped

    def _tick(self) -> None:
        """Called by the signal loop about twice a second (the pre-fork supervisor watches its processes here)."""

    def _http_drained(self, stopped: threading.Thread) -> bool:
        """After the stop's wait: whether HTTP drained in time (the pre-fork supervisor also asks its processes)."""
        return not stopped.is_alive()

    def _loop(self) -> int:
        ping = watchdog_interval()
        next_ping = time.monotonic()
        while True:
            received = wait_signal(0.5)
            number = received if received is not None else (self._leaked.pop(0) if self._leaked else None)
            if ping and time.monotonic() >= next_ping:
                next_ping = time.monotonic() + ping
                if self.scheduler.healthy():
                    notify("WATCHDOG=1")
            self._tick()
            if number is None:
                continue
            if number == signal.SIGHUP:
                self.reload()
            else:
                return self.stop(signal.Signals(number).name)

    def _leak(self, number: int, frame: object) -> None:
        """A signal that reached a thread where a library had unblocked it (multiprocessing's resource tracker
        start does): Python runs this in the main thread, and the loop handles it like one from sigtimedwait."""
        self._leaked.append(number)

    def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid (one log line says why)."""
        notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            new = config_module.load(self.config_path)
            check_reloadable(self.config, new)
            with declaration_lock():
                shell.check_declarable(new)
                shell.declare(new)
        except (ConfigError, OSError, peewee.PeeweeException) as error:
            log_event(
                log,
                "config.reload.refused",
                logging.ERROR,
                path=self.config_path,
                reason=str(error),
                kept="running config",
            )
            notify("READY=1", "STATUS=config reload refused; running the previous config")
            metrics.config_reloaded(False)
            return False
        with self._pending_lock:
            self._pending = new
        swap = self.scheduler.housekeeping_config
        if swap.acquire(timeout=SWAP_WAIT_SECONDS):
            try:
                self._swap_pending()
            finally:
                swap.release()
        else:
            threading.Thread(target=self._swap_after_housekeeping, name="config-swap", daemon=True).start()
        return True

    def _swap_after_housekeeping(self) -> None:
        with self.scheduler.housekeeping_config:
            self._swap_pending()

    def _swap_pending(self) -> None:
        """Put the newest validated config in force for the scheduler and SCIM at once, between two housekeeping
        runs: an org housekept with the old rules never commits after a SCIM write made with the new ones. A reload
        during a long housekeeping run is applied when that run ends, by a thread, so the signal loop keeps
        answering the watchdog; only the newest of several such reloads is applied."""
        with self._pending_lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        self._hand_over(new)
        changes = self.scheduler.apply(new)
        self.config = new
        self.state.config = new
        logs.configure(new.logging.format, new.logging.level)
        for key in restart_needed(self.started_with, new):
            log_event(
                log,
                "config.reload.restart_needed",
                logging.WARNING,
                setting=key,
                running=_setting(self.started_with, key),
                configured=_setting(new, key),
                action=f"{key} is read only at start; restart syncd to apply it (systemctl restart syncd)",
            )
        log_event(log, "config.reloaded", path=self.config_path, **{k: ",".join(v) for k, v in changes.items()})
        metrics.config_reloaded(True)
        notify("READY=1", f"STATUS=serving, {len(new.sources)} sources")

    def _hand_over(self, new: Config) -> None:
        """Called just before the swap, in the same turn between housekeeping runs (the pre-fork supervisor puts the
        new config in force in its HTTP processes here)."""

    def stop(self, why: str) -> int:
        """Graceful shutdown within ``server.shutdown_timeout`` (see the module docstring)."""
        timeout = float(self.config.server.shutdown_timeout)
        deadline = time.monotonic() + timeout
        notify("STOPPING=1", f"STATUS=stopping ({why})")
        running = self.scheduler.in_flight()
        log_event(log, "service.stopping", signal=why, runs_in_flight=",".join(sorted(running)), timeout_s=timeout)
        self.state.draining = True
        self.scheduler.stop_taking_work()
        http_stopped = self._stop_http()
        if self.metrics_server is not None:
            threading.Thread(target=self.metrics_server.stop, name="metrics-stop", daemon=True).start()
        idle = self.scheduler.wait_idle(max(0.0, deadline - time.monotonic()))
        http_stopped.join(max(0.0, deadline - time.monotonic()))
        if self._http_drained(http_stopped) and idle:
            self.checkpointer.stop(max(1.0, deadline - time.monotonic()))
            log_event(log, "service.stopped", signal=why)
            return 0
        left = self.scheduler.in_flight()
        self.scheduler.abandon()
        log_event(
            log,
            "service.stop_timeout",
            logging.ERROR,
            runs_abandoned=",".join(sorted(left)),
            requests_in_flight=http_stopped.is_alive(),
            effect="open transactions are rolled back by the database, the leases released; a restart redoes the work",
        )
        logging.shutdown()
        os._exit(1)


def wait_signal(timeout: float) -> int | None:
    """The next of :data:`HANDLED` within ``timeout`` seconds, or None. A stop and continue (SIGSTOP, SIGCONT) of the
    process interrupts ``sigtimedwait(2)``, after which Python returns a siginfo whose ``si_signo`` is garbage; that
    is no signal of ours and reads as none (the service crashed on it before)."""
    received = signal.sigtimedwait(HANDLED, timeout)
    return received.si_signo if received is not None and received.si_signo in HANDLED else None


def http_server(listen: str, config: Config, state: ServiceState, server_class: type[Server] = Server) -> Server:
    """The SCIM/admin/health listener: cheroot with ``server.workers`` threads."""
    server = server_class(
        parse_listen(listen),
        create_app(config, state),
        numthreads=max(1, config.server.workers),
        server_name="syncd",
        shutdown_timeout=config.server.shutdown_timeout,
        timeout=30,
    )
    # The app bounds every body by server.max_body_bytes itself (reading at most that much), so that a 413 under
    # /scim/v2 is a SCIM error (RFC 7644 §3.12); cheroot's own limit would answer text/plain first.
    server.max_request_body_size = 0
    return server


RESTART_ONLY = (
    "server.listen",
    "server.metrics_listen",
    "server.metrics_token_file",
    "server.processes",
    "server.workers",
    "server.max_body_bytes",
    "server.housekeeping_every",
    "server.webhook_every",
)
"""Settings ``syncd serve`` reads only at start (its listeners, processes, threads and periodic jobs are made from
them): a reload applies everything else and logs ``config.reload.restart_needed`` for each of these that changed
(docs/architecture.md, "Running it"). A changed ``database.url`` refuses the whole reload (:func:`check_reloadable`)."""


def restart_needed(started_with: Config, new: Config) -> list[str]:
    """Those of :data:`RESTART_ONLY` whose value in ``new`` differs from the one the service started with."""
    return [key for key in RESTART_ONLY if _setting(started_with, key) != _setting(new, key)]


def _setting(config: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def check_reloadable(old: Config, new: Config) -> None:
    """Refuse what a reload cannot change in a running process; what the store cannot take is refused by
    :func:`syncd.admin.shell.check_declarable` before anything is declared."""
    if new.database.url != old.database.url:
        raise ConfigError("database.url changed; a different database needs a restart (systemctl restart syncd)")


def _metrics_server(config: Config, state: ServiceState, listen: str) -> Server:
    """The metrics listener: two threads are plenty for scrapes, and it shares nothing with SCIM's pool."""
    token = None
    if config.server.metrics_token_file is not None:
        try:
            token = Path(config.server.metrics_token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ServeError(
                f"server.metrics_token_file {config.server.metrics_token_file}: cannot read it "
                f"({error.strerror or error}); write the token there or remove the key"
            ) from None
        if not token:
            raise ServeError(
                f"server.metrics_token_file {config.server.metrics_token_file} is empty; write a token there"
            )
    return Server(
        parse_listen(listen, "server.metrics_listen"),
        create_metrics_app(state, token),
        numthreads=2,
        server_name="syncd-metrics",
        shutdown_timeout=1,
        timeout=30,
    )


def serve(
    config_path: str | None = None,
    *,
    listen: str | None = None,
    metrics_listen: str | None = None,
    run: RunFunction | None = None,
    processes: int | None = None,
) -> int:
    """Run the service until SIGTERM; ``run`` replaces the pipeline's run function (tests, benchmarks).

    ``metrics_listen`` (or ``server.metrics_listen``) is where ``/metrics`` is served; an empty one serves none.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    config = config_module.load(config_path)
    check_listen(listen or config.server.listen, "--listen" if listen else "server.listen")
    metrics_at = config.server.metrics_listen if metrics_listen is None else metrics_listen
    if metrics_at:
        key = "server.metrics_listen" if metrics_listen is None else "--metrics-listen"
        check_listen(metrics_at, key, "--metrics-listen")
    logs.configure(config.logging.format, config.logging.level)
    open_database(config.database.url, background_checkpoints=True)
    try:
        upgrade()
        with declaration_lock():
            shell.declare(config)
    except UNREACHABLE as error:
        raise ServeError(str(unavailable(error, config.database.url))) from None
    if config.path is not None:
        log_event(log, "config.loaded", path=str(Path(config.path)), sources=len(config.sources))
    count = config.server.processes if processes is None else processes
    if count > 1:
        from syncd.service.prefork import Supervisor

        return Supervisor(config_path, config, listen or config.server.listen, run, metrics_at, count).run()
    service = Service(config_path, config, listen or config.server.listen, run, metrics_at)
    return service.run()
