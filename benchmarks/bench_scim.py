"""SCIM throughput and latency: syncd's endpoint beside scim2-server's own reference server, in one run.

Both run on gunicorn on 127.0.0.1 and are driven by the same client (``requests``, several processes):

- ours: ``scim.create_app`` on the embedded SQLite store (or ``--database URL``), gunicorn ``-w WORKERS`` gthread
  workers (keep-alive, like the reference), each write reconciling the members it touched in its transaction;
- reference: scim2-server's test server application (``BearerTokenApplication`` over ``InMemoryStorage``, the
  default RFC 7643 schemas and configuration), gunicorn with one worker and threads, since its storage lives in the
  memory of one process.

Measured, for each: create, lookup by userName (at 1,000 users and at N), GET of a user by id,
``/ServiceProviderConfig``, paging through the users (count=100), PUT, PATCH adding/removing one member of a
10,000-member group and of a 10-member group, DELETE. Each figure is throughput (operations/s over the wall time of
all client processes), p50/p99 latency and the server's CPU per operation (user + system time of the gunicorn
processes, from ``/proc``); the last column is the ratio ours/reference. Each measurement stops at its operation count or after ``--time-box`` seconds, whichever
comes first. The machine is shared: figures are noisy, compare ratios from the same run.

    python benchmarks/bench_scim.py                 # N=10,000 users
    python benchmarks/bench_scim.py --users 100000  # paging samples pages above 20,000 users
    python benchmarks/bench_scim.py --only ours --rules      # each write reconciled with the org's mapping rules
    python benchmarks/bench_scim.py --baseline no-reconcile   # the cost of reconciling each SCIM write:
        # the baseline is ours with syncd.sync.pipeline.reconcile_touched replaced by a no-op (aim: within 20%)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
REFERENCE_TOKEN = "reference-bench-token"


# -- the two applications, as gunicorn loads them ---------------------------------------------------------------


def ours_app() -> Any:
    """syncd's SCIM app over the config named by SYNCD_CONFIG (gunicorn: ``bench_scim:ours_app()``)."""
    from scim import create_app
    from syncd import config
    from syncd.sync import pipeline

    def no_reconciler(*args: Any, **kwargs: Any) -> int:
        return 0

    if os.environ.get("SYNCD_BENCH_RECONCILE") == "off":
        pipeline.reconcile_touched = no_reconciler  # the --baseline no-reconcile server: SCIM alone
    return create_app(config.load(os.environ["SYNCD_CONFIG"]))


def reference_app() -> Any:
    """scim2-server's reference test server application (gunicorn: ``bench_scim:reference_app()``)."""
    from scim2_models import ScimProvider
    from scim2_server.memory import InMemoryStorage
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
    from scim2_server.utils import (
        load_default_resource_types,
        load_default_schemas,
        load_default_service_provider_config,
    )

    config = load_default_service_provider_config()
    config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    service = ScimService(provider, secret="bench")
    return BearerTokenApplication(InMemoryStorage(), provider, service, bearer_tokens=[REFERENCE_TOKEN])


# -- servers -------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    base: str
    token: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (gunicorn's master and workers), from ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def start(name: str, app: str, args: list[str], env: dict[str, str], base_path: str, token: str) -> Server:
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--log-level", "warning", *args, app]
    process = subprocess.Popen(command, env=full_env, cwd=str(ROOT))
    base = f"http://127.0.0.1:{port}{base_path}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/ServiceProviderConfig", timeout=10)
            return Server(name, base, token, process)
        except requests.RequestException:
            if process.poll() is not None:
                raise SystemExit(f"{name} server exited with {process.returncode}; see its output above") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{name} server did not answer on {base} within 60 s")


RULES = """
[[orgs]]
slug = "{slug}"
name = "Benchmark"
[[orgs.rules]]
group = "big"
team = "big"
[[orgs.rules]]
group = "small"
team = "small"
team_role = "maintainer"
[[orgs.rules]]
group_glob = "group00*"
role = "admin"
"""
"""``--rules``: the org's rules put the big and small groups' members in teams and some 10-member groups' in admin,
so that each SCIM write reconciles with real rules (a team or role change, ledgered, for every member moved)."""


def start_ours(
    workdir: Path,
    workers: int,
    threads: int,
    database: str | None,
    name: str = "ours",
    reconcile: bool = True,
    rules: bool = False,
) -> Server:
    from syncd.admin import tokens
    from syncd.config import load as load_config
    from syncd.store import open_database, upgrade
    from syncd.sync import orgs, pipeline

    url = database or f"sqlite:///{workdir / 'syncd.db'}"
    db = open_database(url)
    upgrade()
    org = orgs.create(f"bench-{uuid.uuid4().hex[:8]}", "Benchmark")
    _, token = tokens.create(org, "scim")
    config = workdir / "syncd.toml"
    text = f'[database]\nurl = "{url}"\n\n[server]\nmax_body_bytes = 4194304\n'
    config.write_text(text + (RULES.format(slug=org.slug) if rules else ""), encoding="utf-8")
    # The org planned whole once, as `syncd serve`'s housekeeping plans every org (server.housekeeping_every): its
    # plan basis is recorded, as it is for any org served for a while.
    pipeline.reconcile_org(load_config(str(config)), org.slug)
    db.close()
    return start(
        name,
        "bench_scim:ours_app()",
        ["-w", str(workers), "--threads", str(threads)],
        {"SYNCD_CONFIG": str(config), "SYNCD_BENCH_RECONCILE": "on" if reconcile else "off"},
        "/scim/v2",
        token,
    )


def start_reference(threads: int) -> Server:
    return start(
        "reference", "bench_scim:reference_app()", ["-w", "1", "--threads", str(threads)], {}, "/v2", REFERENCE_TOKEN
    )


# -- client ----------------------------------------------------------------------------------------------------------

Op = tuple[str, str, Any, dict[str, str] | None]  # method, path (with query), JSON body, extra headers


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
    return session


def _run_ops(job: tuple[str, str, list[Op], float]) -> tuple[list[float], int]:
    base, token, ops, deadline = job
    session = _session(token)
    latencies: list[float] = []
    errors = 0
    for method, path, body, headers in ops:
        if time.time() > deadline:
            break
        started = time.perf_counter()
        answer = session.request(method, base + path, data=None if body is None else json.dumps(body), headers=headers)
        latencies.append(time.perf_counter() - started)
        if answer.status_code >= 400:
            errors += 1
    return latencies, errors


@dataclass
class Figure:
    ops: int
    seconds: float
    p50: float
    p99: float
    errors: int
    cpu: float = 0.0
    """Server CPU seconds spent during the measurement."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def measure(server: Server, ops: list[Op], clients: int, time_box: float, warm: bool = True) -> Figure:
    """Run ``ops`` from ``clients`` processes; read-only operations are first replayed briefly, untimed."""
    if warm and ops and ops[0][0] == "GET":
        _run_ops((server.base, server.token, ops[: min(200, len(ops))], time.time() + 10))
    chunks = [ops[i::clients] for i in range(clients)]
    deadline = time.time() + time_box
    cpu_before = server_cpu_seconds(server.process.pid)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_run_ops, [(server.base, server.token, chunk, deadline) for chunk in chunks])
    seconds = time.perf_counter() - started
    cpu = server_cpu_seconds(server.process.pid) - cpu_before
    latencies = sorted(lat for lats, _ in results for lat in lats)
    errors = sum(e for _, e in results)
    if not latencies:
        return Figure(0, seconds, 0.0, 0.0, errors, cpu)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Figure(len(latencies), seconds, statistics.median(latencies), p99, errors, cpu)


# -- seeding ----------------------------------------------------------------------------------------------------------


def user_body(name: str) -> dict[str, Any]:
    return {
        "schemas": [USER_URN],
        "userName": name,
        "name": {"givenName": "Bench", "familyName": name},
        "emails": [{"value": f"{name}@bench.example.com", "type": "work", "primary": True}],
        "active": True,
    }


def bulk_create(server: Server, names: list[str], batch: int = 500) -> list[str]:
    """Create users with Bulk POSTs (RFC 7644 §3.7); return their ids in order."""
    session = _session(server.token)
    ids: list[str] = []
    for start_at in range(0, len(names), batch):
        chunk = names[start_at : start_at + batch]
        operations = [
            {"method": "POST", "path": "/Users", "bulkId": str(i), "data": user_body(name)}
            for i, name in enumerate(chunk)
        ]
        answer = session.post(f"{server.base}/Bulk", data=json.dumps({"schemas": [BULK_URN], "Operations": operations}))
        answer.raise_for_status()
        for outcome in answer.json()["Operations"]:
            if str(outcome["status"]) != "201":
                raise SystemExit(f"{server.name}: seeding failed: {outcome}")
            ids.append(outcome["location"].rsplit("/", 1)[1])
    return ids


def create_group(server: Server, name: str, members: list[str]) -> str:
    session = _session(server.token)
    answer = session.post(f"{server.base}/Groups", data=json.dumps({"schemas": [GROUP_URN], "displayName": name}))
    answer.raise_for_status()
    group_id = str(answer.json()["id"])
    for start_at in range(0, len(members), 1000):
        values = [{"value": m} for m in members[start_at : start_at + 1000]]
        patch = {"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "members", "value": values}]}
        session.patch(f"{server.base}/Groups/{group_id}", data=json.dumps(patch)).raise_for_status()
    return group_id


# -- the run ------------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    users: int
    groups: int
    clients: int
    time_box: float
    page_sample: int
    seed: int


def run_server(server: Server, plan: Plan, log: Callable[[str], None]) -> Iterator[tuple[str, Figure]]:
    """Seed and measure one server, yielding each figure, so that two servers' measurements can alternate."""
    rng = random.Random(plan.seed)
    first = min(1000, plan.users)
    t0 = time.perf_counter()
    ids = bulk_create(server, [f"user{i:06d}" for i in range(first)])
    names = [f"user{i:06d}" for i in range(first)]
    lookups = [("GET", f'/Users?filter=userName eq "{rng.choice(names)}"', None, None) for _ in range(2000)]
    yield "lookup @1,000", measure(server, lookups, plan.clients, plan.time_box)
    ids += bulk_create(server, [f"user{i:06d}" for i in range(first, plan.users)])
    names = [f"user{i:06d}" for i in range(plan.users)]
    log(f"  {server.name}: seeded {plan.users} users in {time.perf_counter() - t0:.1f} s")
    big_size = min(10_000, len(ids) - 20)
    big = create_group(server, "big", ids[:big_size])
    small = create_group(server, "small", ids[-10:])
    for g in range(plan.groups):
        create_group(server, f"group{g:04d}", rng.sample(ids, 10))
    log(f"  {server.name}: seeded {plan.groups + 2} groups (one of {big_size} members, one of 10)")

    lookups = [("GET", f'/Users?filter=userName eq "{rng.choice(names)}"', None, None) for _ in range(3000)]
    yield f"lookup @{plan.users:,}", measure(server, lookups, plan.clients, plan.time_box)

    gets = [("GET", f"/Users/{rng.choice(ids)}", None, None) for _ in range(3000)]
    yield "GET by id", measure(server, gets, plan.clients, plan.time_box)

    discovery = [("GET", "/ServiceProviderConfig", None, None)] * 3000
    yield "/ServiceProviderConfig", measure(server, discovery, plan.clients, plan.time_box)

    pages = (plan.users + 99) // 100
    starts = [1 + 100 * p for p in range(pages)]
    if plan.page_sample and pages > plan.page_sample:
        starts = rng.sample(starts, plan.page_sample)
    paging = [("GET", f"/Users?startIndex={s}&count=100", None, None) for s in starts]
    yield "page of 100", measure(server, paging, plan.clients, plan.time_box * 3)

    creates = [("POST", "/Users", user_body(f"new{i:06d}"), None) for i in range(1500)]
    yield "create", measure(server, creates, plan.clients, plan.time_box)

    puts = []
    for i in rng.sample(range(len(ids)), min(1000, len(ids))):
        body = user_body(names[i])
        body["title"] = f"title {i}"
        puts.append(("PUT", f"/Users/{ids[i]}", body, None))
    yield "PUT", measure(server, puts, plan.clients, plan.time_box)

    outsiders = ids[big_size : len(ids) - 10]
    for label, group_id in (
        (f"member PATCH, {big_size:,}-member group", big),
        ("member PATCH, 10-member group", small),
    ):
        member_ops: list[Op] = []
        for i in range(400):
            member = outsiders[(i // 2) % len(outsiders)]
            if i % 2 == 0:
                operation = {"op": "add", "path": "members", "value": [{"value": member}]}
            else:
                operation = {"op": "remove", "path": f'members[value eq "{member}"]'}
            member_ops.append(
                ("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH_URN], "Operations": [operation]}, None)
            )
        # add and remove of the same member must stay ordered: one client process
        yield label, measure(server, member_ops, 1, plan.time_box)

    session = _session(server.token)
    created = session.get(f"{server.base}/Users", params={"filter": 'userName sw "new"', "count": "1000"}).json()
    deletes = [("DELETE", f"/Users/{r['id']}", None, None) for r in created.get("Resources", [])]
    yield "DELETE", measure(server, deletes, plan.clients, plan.time_box)


def cpu_ms(figure: Figure) -> float:
    """Server CPU milliseconds per operation."""
    return figure.cpu * 1000 / figure.ops if figure.ops else 0.0


def report(plan: Plan, ours: dict[str, Figure], reference: dict[str, Figure], baseline: str = "reference") -> None:
    print()
    print(f"SCIM benchmark: {plan.users:,} users, {plan.groups + 2} groups, {plan.clients} client processes")
    if baseline == "no-reconcile":
        print("baseline ('ref' columns): ours with reconciliation of SCIM writes switched off")
    print("(shared 2-core machine: figures are noisy; compare the ratio column of one run)")
    header = (
        f"{'operation':<38}{'ours ops/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>8}   "
        f"{'ref ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>8}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, mine in ours.items():
        theirs = reference.get(label)
        ratio = f"{mine.rate / theirs.rate:.1f}x" if theirs and theirs.rate else "n/a"
        ref_cols = (
            f"{theirs.rate:>10.1f}{theirs.p50 * 1000:>9.1f}{theirs.p99 * 1000:>9.1f}{cpu_ms(theirs):>8.2f}"
            if theirs
            else f"{'-':>36}"
        )
        errors = f"  ({mine.errors} errors ours)" if mine.errors else ""
        errors += f"  ({theirs.errors} errors ref)" if theirs and theirs.errors else ""
        print(
            f"{label:<38}{mine.rate:>11.1f}{mine.p50 * 1000:>9.1f}{mine.p99 * 1000:>9.1f}{cpu_ms(mine):>8.2f}   "
            f"{ref_cols}{ratio:>8}{errors}"
        )
    lookup_small = ours.get("lookup @1,000")
    lookup_large = ours.get(f"lookup @{plan.users:,}")
    if lookup_small and lookup_large and lookup_large.p50:
        print(
            f"\nours: lookup p50 at {plan.users:,} users / at 1,000 users = {lookup_large.p50 / lookup_small.p50:.2f}"
        )
    big = next((f for k, f in ours.items() if k.startswith("member PATCH") and "10-member" not in k), None)
    small = ours.get("member PATCH, 10-member group")
    if big and small and small.p50:
        print(f"ours: member PATCH p50, big group / 10-member group = {big.p50 / small.p50:.2f}")
    pages = ours.get("page of 100")
    ref_pages = reference.get("page of 100")
    if pages and pages.rate:
        full = (plan.users / 100) / pages.rate
        line = f"ours: paging through all {plan.users:,} users takes about {full:.1f} s"
        if ref_pages and ref_pages.rate:
            line += f" (reference: about {(plan.users / 100) / ref_pages.rate:.1f} s)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="users to seed (default 10,000)")
    parser.add_argument("--groups", type=int, default=20, help="extra 10-member groups to seed (default 20)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for ours (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker, both servers (default 4)")
    parser.add_argument("--time-box", type=float, default=20.0, help="seconds per measurement at most (default 20)")
    parser.add_argument(
        "--page-sample",
        type=int,
        default=0,
        help="pages to sample when paging (default: all up to 200 pages, else 100)",
    )
    parser.add_argument("--database", help="database URL for ours (default: a fresh SQLite file)")
    parser.add_argument("--only", choices=["ours", "reference"], help="run one server only")
    parser.add_argument(
        "--baseline",
        choices=["reference", "no-reconcile"],
        default="reference",
        help="compare with scim2-server's reference server (default) or with ours without reconciliation",
    )
    parser.add_argument("--rules", action="store_true", help="give ours' org mapping rules (see RULES)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    page_sample = args.page_sample or (0 if args.users <= 20_000 else 100)
    plan = Plan(args.users, args.groups, args.clients, args.time_box, page_sample, args.seed)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: dict[str, dict[str, Figure]] = {"ours": {}, "reference": {}}
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-scim-") as workdir:
        try:
            if args.only != "reference":
                log("starting ours ...")
                servers.append(start_ours(Path(workdir), args.workers, args.threads, args.database, rules=args.rules))
            if args.only != "ours" and args.baseline == "no-reconcile":
                log("starting ours without reconciliation ...")
                baseline_dir = Path(workdir) / "baseline"
                baseline_dir.mkdir()
                servers.append(
                    start_ours(baseline_dir, args.workers, args.threads, None, name="reference", reconcile=False)
                )
            elif args.only != "ours":
                log("starting reference ...")
                servers.append(start_reference(args.threads))
            # Both servers run the same measurements in turn, so that both see the same load on a shared machine.
            runs = {server.name: run_server(server, plan, log) for server in servers}
            while runs:
                for name in list(runs):
                    step = next(runs[name], None)
                    if step is None:
                        del runs[name]
                        continue
                    label, figure = step
                    results[name][label] = figure
                    log(f"  {name}: {label}: {figure.rate:.1f} ops/s, p50 {figure.p50 * 1000:.1f} ms")
        finally:
            for server in servers:
                server.stop()
    report(
        plan,
        results["ours"] or results["reference"],
        results["reference"] if results["ours"] else {},
        args.baseline,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
