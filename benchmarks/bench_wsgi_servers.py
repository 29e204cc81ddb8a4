"""Measure candidate production WSGI servers for ``syncd serve`` on this machine: req/s and p99 latency.

Two endpoints of the real app: ``/healthz`` (trivial) and ``GET /admin/v1/sources`` (a bearer-token lookup and a
source query against SQLite, i.e. what every SCIM request does before its own work). Several client processes keep
HTTP/1.1 connections open and hammer one endpoint for a fixed time; each server runs in its own process.

    python benchmarks/bench_wsgi_servers.py [--seconds 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREADS = 8


def app_from_env():  # type: ignore[no-untyped-def]
    """The app a server process serves (gunicorn loads it by name): the config named by SYNCD_CONFIG."""
    from syncd.admin import shell
    from syncd.service.http_apps import ServiceState, create_app

    runtime = shell.start()
    return create_app(runtime.config, ServiceState(config=runtime.config), with_scim=False)


def _serve(kind: str, port: int) -> None:
    app = app_from_env()
    if kind == "waitress":
        import waitress

        waitress.serve(app, host="127.0.0.1", port=port, threads=THREADS, _quiet=True)
    elif kind == "cheroot":
        from cheroot.wsgi import Server

        server = Server(("127.0.0.1", port), app, numthreads=THREADS)
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        server.start()
    elif kind == "werkzeug-threaded":
        from werkzeug.serving import make_server

        make_server("127.0.0.1", port, app, threaded=True).serve_forever()


def _start(kind: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if kind.startswith("gunicorn"):
        _, worker, workers, threads = kind.split(":")
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--pythonpath",
            f"{ROOT},{ROOT / 'benchmarks'}",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            worker,
            "-w",
            workers,
            "--threads",
            threads,
            "--log-level",
            "warning",
            "bench_wsgi_servers:app_from_env()",
        ]
    else:
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} did not start")


def _client(port: int, path: str, headers: dict[str, str], seconds: float, out: multiprocessing.Queue) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        latencies.append(time.perf_counter() - started)
    out.put((latencies, errors))


def measure(port: int, path: str, headers: dict[str, str], clients: int, seconds: float) -> tuple[float, float, int]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_client, args=(port, path, headers, seconds, queue)) for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(value for chunk, _ in results for value in chunk)
    errors = sum(e for _, e in results)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 100 else max(latencies)
    return len(latencies) / seconds, p99 * 1000, errors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--servers",
        default="waitress,cheroot,gunicorn:gthread:1:8,gunicorn:gthread:2:4,gunicorn:sync:4:1",
        help="comma-separated candidates",
    )
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{folder}/syncd.db"\n[[orgs]]\nslug = "acme"\nname = "Acme"\n',
            encoding="utf-8",
        )
        env = dict(os.environ, SYNCD_CONFIG=str(config), PYTHONPATH=str(ROOT))
        os.environ.update(env)
        from syncd.admin import shell, tokens
        from syncd.store.models import Organization

        shell.start()
        _, secret = tokens.create(Organization.get(Organization.slug == "acme"), "admin")
        lookup = {"Authorization": f"Bearer {secret}"}
        print(f"{'server':28} {'endpoint':12} {'req/s':>8} {'p99 ms':>8} {'errors':>6}")
        for kind in args.servers.split(","):
            port = _free_port()
            process = _start(kind, port, env)
            try:
                measure(port, "/healthz", {}, args.clients, 1.0)
                for label, path, headers in (("trivial", "/healthz", {}), ("db lookup", "/admin/v1/sources", lookup)):
                    rate, p99, errors = measure(port, path, headers, args.clients, args.seconds)
                    print(f"{kind:28} {label:12} {rate:8.0f} {p99:8.1f} {errors:6d}", flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    main()
