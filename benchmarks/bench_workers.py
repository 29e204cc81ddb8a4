"""Threads against worker processes in ``syncd serve`` at 8 SCIM clients (issue 16, "Multi-core serving").

For each mode, the service is started on a real config and a fresh store, SCIM users are seeded, and client
processes with keep-alive connections drive, one phase after the other, lookups (``GET /Users?filter=userName eq
...``) and writes (``PATCH`` replace of ``displayName`` and ``POST`` of new users, half each). Modes:

- ``threads``: ``python -m syncd serve --processes 1`` (cheroot threads in one process, the default);
- ``workers=N``: ``python -m syncd serve --processes N``, the opt-in pre-fork mode (``syncd/service/prefork.py``).

It prints throughput, p50/p99 latency and errors per mode and phase, the server's CPU seconds per request (the
process tree's utime + stime from /proc) and each mode's throughput as a ratio of the threads mode. An SQLite store
(the embedded default) by default: its writes are serialised by the one write lock, so extra processes can help
lookups more than writes; ``--database-url postgresql://...`` uses that database instead (emptied per mode).
``--rounds`` repeats the modes, interleaved, on a host whose load moves.

    python benchmarks/bench_workers.py [--clients 8] [--seconds 10] [--workers 2,4] [--rounds 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from scim_client import Scim, seed, user_body, wait_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_USERS = 500
CONFIG = """
[database]
url = "{url}"

[server]
shutdown_timeout = 30

[logging]
format = "json"

[[orgs]]
slug = "idp"
name = "Pushed by an IdP"
domains = ["scim.example"]
"""


def client(port: int, token: str, users: list[tuple[str, str]], kind: str, stop_at: float, out: Any) -> None:
    """One client process: ``kind`` requests (lookup or write) until ``stop_at`` (monotonic)."""
    scim = Scim(port, token)
    rng = random.Random(os.getpid())
    latencies: list[float] = []
    errors = 0
    while time.monotonic() < stop_at:
        name, key = rng.choice(users)
        started = time.perf_counter()
        if kind == "lookup":
            status, _ = scim.call("GET", f"/scim/v2/Users?filter=userName%20eq%20%22{name}%22")
            ok = status == 200
        elif rng.random() < 0.5:
            patch = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": f"n{rng.randrange(10**6)}"}],
            }
            status, _ = scim.call("PATCH", f"/scim/v2/Users/{key}", patch)
            ok = status in (200, 204)
        else:
            status, _ = scim.call("POST", "/scim/v2/Users", user_body(f"new-{uuid.uuid4().hex[:12]}@scim.example"))
            ok = status == 201
        latencies.append(time.perf_counter() - started)
        errors += 0 if ok else 1
    out.put((latencies, errors))


def drive(port: int, token: str, users, kind: str, clients: int, seconds: float, server_pid: int) -> dict[str, Any]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    cpu_before = tree_cpu(server_pid)
    began = time.monotonic()
    processes = [
        multiprocessing.Process(target=client, args=(port, token, users, kind, began + seconds, queue))
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    elapsed = time.monotonic() - began
    cpu = tree_cpu(server_pid) - cpu_before
    for process in processes:
        process.join()
    latencies = sorted(v for r in results for v in r[0])
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "n": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50": cuts[49] * 1000,
        "p99": cuts[98] * 1000,
        "errors": sum(r[1] for r in results),
        "cpu_ms": cpu * 1000 / max(len(latencies), 1),
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants, from /proc (proc(5): stat fields 14, 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def fresh_store(url: str | None, work: Path, mode: str) -> str:
    if url is None:
        return f"sqlite:///{work / f'{mode}.db'}"
    import psycopg2

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return url


def run_mode(mode: str, workers: int, args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    from syncd.admin import shell, tokens
    from syncd.store.models import Organization

    work.mkdir(exist_ok=True)
    config = work / f"{mode}.toml"
    config.write_text(CONFIG.format(url=fresh_store(args.database_url, work, mode)), encoding="utf-8")
    runtime = shell.start(str(config))
    _, token = tokens.create(Organization.get(Organization.slug == "idp"), "scim", description="bench")
    runtime.db.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = work / f"{mode}.log"
    command = [sys.executable, "-m", "syncd", "--config", str(config), "serve", "--metrics-listen", ""]
    command += ["--processes", str(workers or 1)]
    server = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(port, server, log_path, "bench_workers")
        users = seed(port, token, SEED_USERS, "bench_workers")
        return {
            kind: drive(port, token, users, kind, args.clients, args.seconds, server.pid)
            for kind in ("lookup", "write")
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (lookups, writes)")
    parser.add_argument("--workers", default=str(os.cpu_count() or 2), help="comma-separated worker process counts")
    parser.add_argument("--rounds", type=int, default=1, help="modes run this many times, interleaved (noisy hosts)")
    parser.add_argument("--database-url", help="a PostgreSQL database to use (its public schema is emptied per mode)")
    args = parser.parse_args()
    modes = [("threads", 0)] + [(f"workers={n}", int(n)) for n in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    store = "postgresql" if args.database_url else "sqlite"
    print(
        f"bench_workers: {args.clients} SCIM clients (keep-alive), {args.seconds:g} s per phase, {SEED_USERS} users, "
        f"store {store}, {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    for round_number in range(1, args.rounds + 1):
        figures = {mode: run_mode(mode, workers, args, work / f"round{round_number}") for mode, workers in modes}
        base = figures["threads"]
        for mode, phases in figures.items():
            for kind, f in phases.items():
                print(
                    f"round {round_number} {mode:>14} {kind:>6}: {f['rate']:6.0f} req/s "
                    f"({f['rate'] / base[kind]['rate']:4.2f}x threads), p50 {f['p50']:6.1f} ms, "
                    f"p99 {f['p99']:6.1f} ms, server CPU {f['cpu_ms']:5.2f} ms/req, errors {f['errors']} of {f['n']}",
                    flush=True,
                )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
