"""SCIM under load while a 100,000-person source sync runs in the same ``syncd serve`` (issue 6, "Done when").

The real service (``python -m syncd serve``: cheroot, SCIM blueprint, scheduler) runs as a subprocess. Several
client processes drive SCIM lookups (``GET /Users?filter=userName eq ...``) and writes (``PATCH`` replace of
``displayName``, ``POST`` of new users) with keep-alive connections. Three phases:

1. SCIM load alone (baseline throughput and latency);
2. a 100,000-person file source synced alone (added by a config reload, SIGHUP, so it runs at once);
3. a second 100,000-person source (another org) synced while the same SCIM load runs until the sync ends.

It prints SCIM throughput and p50/p99 latency of lookups and writes in phases 1 and 3, both sync durations and the
sync's slowdown under load. Aim: SCIM p99 < 100 ms and no error during the sync. PostgreSQL by default (a database
made and dropped for the run); ``--database sqlite`` runs the embedded default (a file in the run's temp dir), where
SCIM writes share one write lock with the sync and get it between the sync's apply batches.

    python benchmarks/bench_serve.py [--people 100000] [--clients 4] [--seconds 15] [--database sqlite|postgresql]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
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

ADMIN_URL = os.environ.get("SYNCD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED_USERS = 500
WRITE_SHARE = 0.2
GROUPS = 500


def write_people(path: Path, count: int) -> None:
    """An HR export: one row per person, groups named on the person (the file connector's CSV shape)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["employee id", "email", "name", "department", "title", "groups"])
        for i in range(count):
            groups = ";".join(f"Group {(i * 7 + k * 613) % GROUPS:04d}" for k in range(3))
            department = ["Sales", "Engineering", "Finance", "Support"][i % 4]
            writer.writerow([f"E{i:06d}", f"person{i:06d}@acme.com", f"Person {i:06d}", department, "Engineer", groups])


def config_text(url: str, sources: list[tuple[str, str, Path]]) -> str:
    text = f"""
[database]
url = "{url}"

[server]
shutdown_timeout = 120
lease_seconds = 600

[logging]
format = "json"

[[orgs]]
slug = "idp"
name = "Pushed by an IdP"
domains = ["scim.example"]
"""
    for slug in ("hr-quiet", "hr-busy"):
        text += f"""
[[orgs]]
slug = "{slug}"
name = "{slug}"
domains = ["acme.com"]
[orgs.policy]
guard_max_percent = 100
guard_max_count = 1000000
"""
    for name, org, path in sources:
        text += f"""
[[sources]]
name = "{name}"
org = "{org}"
kind = "file"
schedule = "1d"
path = "{path}"
"""
    return text


def load(
    port: int, token: str, users: list[tuple[str, str]], stop_at: float, stop_file: str, out: multiprocessing.Queue
) -> None:
    """One client process: lookups and writes until ``stop_at`` (monotonic) or until ``stop_file`` exists."""
    client = Scim(port, token)
    rng = random.Random(os.getpid())
    lookups: list[float] = []
    writes: list[float] = []
    errors = 0
    checks = 0
    while time.monotonic() < stop_at:
        checks += 1
        if stop_file and checks % 20 == 0 and os.path.exists(stop_file):
            break
        name, key = rng.choice(users)
        started = time.perf_counter()
        if rng.random() >= WRITE_SHARE:
            status, _ = client.call("GET", f"/scim/v2/Users?filter=userName%20eq%20%22{name}%22")
            ok = status == 200
            lookups.append(time.perf_counter() - started)
        elif rng.random() < 0.5:
            patch = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": f"n{rng.randrange(10**6)}"}],
            }
            status, _ = client.call("PATCH", f"/scim/v2/Users/{key}", patch)
            ok = status in (200, 204)
            writes.append(time.perf_counter() - started)
        else:
            status, _ = client.call("POST", "/scim/v2/Users", user_body(f"new-{uuid.uuid4().hex[:12]}@scim.example"))
            ok = status == 201
            writes.append(time.perf_counter() - started)
        errors += 0 if ok else 1
    out.put((lookups, writes, errors))


def _free_port() -> int:
    """A port free now on 127.0.0.1: serve's and its /metrics listener's, so that a service already on the default
    metrics port (a demo left running) does not stop the benchmark."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drive(port: int, token: str, users, clients: int, seconds: float, stop_file: str = "") -> dict[str, Any]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    began = time.monotonic()
    workers = [
        multiprocessing.Process(target=load, args=(port, token, users, began + seconds, stop_file, queue))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    elapsed = time.monotonic() - began
    for worker in workers:
        worker.join()
    lookups = sorted(v for r in results for v in r[0])
    writes = sorted(v for r in results for v in r[1])
    return {
        "seconds": elapsed,
        "requests": len(lookups) + len(writes),
        "rate": (len(lookups) + len(writes)) / elapsed,
        "errors": sum(r[2] for r in results),
        "lookup": _percentiles(lookups),
        "write": _percentiles(writes),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values), "p50": float("nan"), "p99": float("nan")}
    cuts = statistics.quantiles(values, n=100)
    return {"n": len(values), "p50": cuts[49] * 1000, "p99": cuts[98] * 1000}


def wait_run(log_path: Path, source: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("source") == source and event.get("event") in ("source.run.ok", "source.run.error"):
                return event
        time.sleep(0.5)
    raise SystemExit(f"bench_serve: source {source} did not finish within {timeout} s; see {log_path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the baseline SCIM phase")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--database-url", help="default: a fresh database of --database kind")
    args = parser.parse_args()

    import psycopg2

    from syncd.admin import shell, tokens
    from syncd.store.models import Organization

    dropped: str | None = None
    url = args.database_url
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    if url is None and args.database == "sqlite":
        url = f"sqlite:///{work / 'syncd.db'}"
    if url is None:
        dropped = f"syncd_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(ADMIN_URL)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{dropped}"')
        url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{dropped}"
    server: subprocess.Popen[bytes] | None = None
    try:
        quiet_csv, busy_csv = work / "quiet.csv", work / "busy.csv"
        write_people(quiet_csv, args.people)
        write_people(busy_csv, args.people)
        config = work / "syncd.toml"
        config.write_text(config_text(url, []), encoding="utf-8")
        runtime = shell.start(str(config))
        _, scim_token = tokens.create(Organization.get(Organization.slug == "idp"), "scim", description="bench")
        runtime.db.close()

        port, metrics_port = _free_port(), _free_port()
        log_path = work / "serve.log"
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "syncd", "--config", str(config), "serve"),
                *("--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_ready(port, server, log_path, "bench_serve")
        users = seed(port, scim_token, SEED_USERS, "bench_serve")
        print(
            f"bench_serve: {args.people} people per sync, {args.clients} SCIM client processes "
            f"({int((1 - WRITE_SHARE) * 100)}% lookups, {int(WRITE_SHARE * 100)}% writes), "
            f"database {url.split(':')[0]}, server cheroot ({os.cpu_count()} CPUs)"
        )

        baseline = drive(port, scim_token, users, args.clients, args.seconds)
        if importlib.util.find_spec("connectors.file") is None:
            _print_load("SCIM alone", baseline)
            print("sync phases not run: connectors.file (the file connector) is not installed in this checkout")
            return 0

        config.write_text(config_text(url, [("hr-quiet", "hr-quiet", quiet_csv)]), encoding="utf-8")
        server.send_signal(signal.SIGHUP)
        quiet = wait_run(log_path, "hr-quiet", 3600)

        stop_file = work / "busy.done"
        config.write_text(
            config_text(url, [("hr-quiet", "hr-quiet", quiet_csv), ("hr-busy", "hr-busy", busy_csv)]),
            encoding="utf-8",
        )
        server.send_signal(signal.SIGHUP)
        pool = multiprocessing.Pool(1)
        waiter = pool.apply_async(wait_run, (log_path, "hr-busy", 3600))
        loaded = _drive_until(port, scim_token, users, args.clients, waiter, stop_file)
        busy = waiter.get()
        pool.close()

        for label, figures in (("SCIM alone", baseline), ("SCIM during sync", loaded)):
            _print_load(label, figures)
        worst = max(loaded["lookup"]["p99"], loaded["write"]["p99"])
        print(f"SCIM p99 during the sync: {worst:.1f} ms (aim < 100 ms, ratio {worst / 100:.2f})")
        print(
            f"SCIM write p99 during the first sync: {loaded['write']['p99']:.1f} ms over {loaded['write']['n']} "
            f"writes, errors {loaded['errors']} (aim < 100 ms, no error)"
        )
        for label, event in (("sync alone", quiet), ("sync under load", busy)):
            print(f"{label:>17}: {event['duration_ms'] / 1000:7.2f} s ({event['event']}, result {event.get('result')})")
        print(f"sync slowdown under SCIM load: {busy['duration_ms'] / max(quiet['duration_ms'], 1):.2f}x")
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
        if dropped:
            admin = psycopg2.connect(ADMIN_URL)
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dropped,),
                )
                cursor.execute(f'DROP DATABASE IF EXISTS "{dropped}"')
    return 0


def _print_load(label: str, figures: dict[str, Any]) -> None:
    print(
        f"{label:>17}: {figures['rate']:7.0f} req/s over {figures['seconds']:5.1f} s, "
        f"lookup p50 {figures['lookup']['p50']:6.1f} ms p99 {figures['lookup']['p99']:6.1f} ms, "
        f"write p50 {figures['write']['p50']:6.1f} ms p99 {figures['write']['p99']:6.1f} ms, "
        f"errors {figures['errors']}"
    )


def _drive_until(port: int, token: str, users, clients: int, waiter, stop_file: Path) -> dict[str, Any]:
    """Drive SCIM load until the sync under load has finished (the waiter's result is ready)."""
    import threading

    def watch() -> None:
        waiter.wait()
        stop_file.touch()

    threading.Thread(target=watch, daemon=True).start()
    return drive(port, token, users, clients, 3600, str(stop_file))


if __name__ == "__main__":
    sys.exit(main())
