"""Reconciliation at scale: sync time and peak RSS of a first sync, a no-op and a 1% change (issues 3 and 16).

``--people N`` people (default 100,000; ``--people 1000000`` is issue 16's figure), N/50 groups (2,000 at 100,000,
20,000 at 1,000,000) and three memberships each. Each phase runs in its own process so that its peak RSS is its
own: the first sync (everyone joins), a no-op re-sync (same input: nothing may be written) and a 1% change (1% of
people: new attributes, moved groups, leavers and joiners). With the file connector present the source is a real
CSV read by ``connectors.file`` as ``run_source`` reads it (streamed into staging when the connector can stream:
the read line then times only the copy, and the parse is counted in stage); without it the same records are fed
to ``pipeline.apply_read`` as a Snapshot (the output says which).

Under each phase's line the steps of the run: read, stage, rekey, scope, gather (the planner's inputs), plan
(reconcile), gather chunks and plan chunks (a whole-org plan made in member chunks: its survey and its batches),
apply, record (the cursor), each with its wall time summed over its calls and the process's peak RSS
when it returned (ru_maxrss: a step's figure is the highest RSS seen by its end). Aims of issue 16 on a 2-core
machine: at 100,000 first < 8 s, no-op < 2 s, 1% < 2 s; at 1,000,000 first < 150 s, no-op < 30 s, 1% < 40 s;
peak RSS < 1 GiB. Wall times grow with the machine's load (printed): compare runs made side by side.

    python benchmarks/bench_reconcile.py [--people 100000] [--database-url postgresql://...] [--snapshot]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROUPS_PER_PERSON = 1 / 50
"""2,000 groups at 100,000 people, 20,000 at 1,000,000 (issue 16's figures)."""
PER_PERSON = 3
AIMS = {"first": 8.0, "noop": 2.0, "change": 2.0}
"""Issue 16's aims in seconds per 100,000 people (at 1,000,000 they are looser per person: 150, 30 and 40 s)."""
AIMS_AT_A_MILLION = {"first": 150.0, "noop": 30.0, "change": 40.0}
RULES_TOML = """
[[orgs.rules]]
group = "Group 0007"
role = "admin"
[[orgs.rules]]
group_glob = "Group 00*"
team = "Core"
team_role = "member"
parent = "Engineering"
[[orgs.rules]]
attribute = {department = "Finance"}
team = "finance"
"""


def group_count(people: int) -> int:
    return max(1, round(people * GROUPS_PER_PERSON))


def person(i: int, version: int, groups_total: int) -> dict[str, str]:
    """Person i as version 1 or 2 of the export: in version 2, 1% of people changed (attributes, groups, leavers,
    joiners), the rest are identical."""
    groups = [f"Group {(i * 7 + k * 613) % groups_total:04d}" for k in range(PER_PERSON)]
    department = ["Sales", "Engineering", "Finance", "Support"][i % 4]
    title = "Engineer"
    if version == 2 and i % 100 == 1:
        title = "Senior Engineer"
    if version == 2 and i % 100 == 2:
        groups = [f"Group {(i * 11 + k * 37) % groups_total:04d}" for k in range(PER_PERSON)]
    return {
        "employee id": f"E{i:06d}",
        "email": f"person{i:06d}@acme.com",
        "name": f"Person {i:06d}",
        "department": department,
        "title": title,
        "groups": ";".join(groups),
    }


def people(count: int, version: int) -> Iterator[dict[str, str]]:
    total = group_count(count)
    yield from (person(i, version, total) for i in range(count) if not (version == 2 and i % 100 == 3))
    if version == 2:
        yield from (person(count + i, 2, total) for i in range(count // 100))


def write_csv(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write the export row by row (by the parent process: a phase's peak RSS is the run's, not the generator's)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(person(0, 1, 1)))
        writer.writeheader()
        writer.writerows(rows)


def snapshot_of(rows: list[dict[str, str]]):
    from connectors.interface import GroupRecord, Snapshot, UserRecord

    users = [
        UserRecord(
            key=row["employee id"],
            user_name=row["email"],
            email=row["email"],
            display_name=row["name"],
            department=row["department"],
            title=row["title"],
            employee_number=row["employee id"],
            groups=tuple(row["groups"].split(";")),
        )
        for row in rows
    ]
    names = sorted({g for row in rows for g in row["groups"].split(";")})
    return Snapshot(users, [GroupRecord(n, n, member_keys=frozenset()) for n in names], cursor=f"v{len(rows)}")


def config_text(url: str, csv_path: Path, people: int) -> str:
    """The bench's config. The guard's count threshold grows with the org (5% of it, as the percent threshold):
    a fixed 5,000 held the 1% change from 500,000 people up (its suspensions and moves pass 5,000), and a held plan
    is planned again for the whole org and rolled back, which is not the change the figure is about."""
    return f"""
[database]
url = "{url}"

[[orgs]]
slug = "bench"
name = "Bench"
domains = ["acme.com"]
[orgs.policy]
guard_max_percent = 5
guard_max_count = {max(5000, people // 20)}
{RULES_TOML}
[[sources]]
name = "hr"
org = "bench"
kind = "file"
path = "{csv_path}"
format = "csv"
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """The process's peak RSS so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The process's resident set now, from /proc (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


PHASES = {
    "stage": ("syncd.sync.pipeline", "stage"),
    "rekey": ("syncd.sync.pipeline", "rekey"),
    "scope": ("syncd.sync.pipeline", "_scope"),
    "gather": ("syncd.sync.pipeline", "gather"),
    "plan": ("syncd.sync.pipeline", "_decide"),
    "gather chunks": ("syncd.sync.chunked", "gather_chunk"),
    "plan chunks": ("syncd.sync.chunked", "plan_chunk"),
    "apply": ("syncd.sync.pipeline", "apply_plan"),
    "record": ("syncd.sync.source_runs", "advanced"),
}
"""The steps of a run, by the name the pipeline calls them under: each is wrapped to add up its wall time and to
note the process's peak RSS when it returns (so a step's peak is the highest RSS seen up to its end)."""


def instrument(phases: dict[str, dict[str, float]]) -> None:
    """Wrap each step of :data:`PHASES` so that it adds its time and peak RSS to ``phases``."""
    import functools
    import importlib

    for name, (module_name, attribute) in PHASES.items():
        module = importlib.import_module(module_name)
        original = getattr(module, attribute, None)
        if original is None:
            continue

        def timed(*args, __original=original, __name=name, **kwargs):
            began = time.perf_counter()
            cpu_began = cpu_seconds()
            before = peak_rss_mib()
            try:
                return __original(*args, **kwargs)
            finally:
                figures = phases.setdefault(
                    __name, {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0, "rss_before_mib": rss_mib()}
                )
                figures["seconds"] = round(figures["seconds"] + time.perf_counter() - began, 2)
                figures["cpu_seconds"] = round(figures["cpu_seconds"] + cpu_seconds() - cpu_began, 2)
                figures["calls"] += 1
                figures["peak_rss_mib"] = round(peak_rss_mib(), 1)
                figures["peak_grew_mib"] = round(figures.get("peak_grew_mib", 0.0) + peak_rss_mib() - before, 1)

        setattr(module, attribute, functools.wraps(original)(timed))


def run_phase(args: argparse.Namespace) -> None:
    """One phase in this process: time it, then report peak RSS (ru_maxrss is KiB on Linux)."""
    from syncd.admin import shell
    from syncd.config import parse
    from syncd.sync import pipeline

    work = Path(args.workdir)
    version = 2 if args.phase == "change" else 1
    csv_path = work / "hr.csv"
    import tomllib

    document = tomllib.loads(config_text(args.database_url, csv_path, args.people))
    read_seconds = 0.0
    phases: dict[str, dict[str, float]] = {}
    instrument(phases)
    if args.mode == "csv":
        config = parse(document, base=work)
        shell.start(config=config)
        from syncd.store.models import Source

        # run_source's steps, timed apart: the connector's read, then stage → plan → guard → apply → commit.
        cursor = Source.get(Source.name == "hr").cursor
        began = time.perf_counter()
        cpu_began = cpu_seconds()
        # As run_source does: a connector that streams is staged record by record, so its parse is timed in stage.
        connector = pipeline.connector_for(config.source("hr"))
        read = getattr(connector, "stream", connector.read)(cursor)
        read_seconds = time.perf_counter() - began
        phases["read"] = {
            "seconds": round(read_seconds, 2),
            "cpu_seconds": round(cpu_seconds() - cpu_began, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
        started = time.perf_counter()
        result = pipeline.apply_read(config, "hr", read, read_cursor=cursor, full=cursor is None)
    else:
        document["sources"][0].pop("path")
        document["sources"][0].pop("format")
        sources = document.pop("sources")
        config = parse(document, base=work)
        from dataclasses import replace

        from syncd.config import SourceSettings

        config = replace(
            config,
            sources=(
                SourceSettings(
                    name="hr",
                    org="bench",
                    kind="file",
                    **{k: v for k, v in sources[0].items() if k not in ("name", "org", "kind")},
                ),
            ),
        )
        shell.start(config=config)
        began = time.perf_counter()
        read = snapshot_of(list(people(args.people, version)))
        read_seconds = time.perf_counter() - began
        started = time.perf_counter()
        cpu_began = cpu_seconds()
        result = pipeline.apply_read(config, "hr", read, read_cursor="bench")
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    staged = result.stage
    print(
        json.dumps(
            {
                "phase": args.phase,
                "seconds": round(seconds + (read_seconds if args.mode == "csv" else 0), 2),
                "reconcile_seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "read_seconds": round(read_seconds, 2),
                "peak_rss_mib": round(peak, 1),
                "actions": result.actions,
                "applied": result.applied,
                "held": result.held,
                "staged_changes": staged.changed if staged else None,
                "phases": phases,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    parser.add_argument("--snapshot", action="store_true", help="feed a Snapshot even if the file connector exists")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return 0
    mode = "csv" if importlib.util.find_spec("connectors.file") and not args.snapshot else "snapshot"
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as work:
        url = args.database_url or f"sqlite:///{Path(work) / 'bench.db'}"
        if url.startswith("postgresql"):
            _fresh_postgres(url)
        memberships = args.people * PER_PERSON
        print(
            f"bench_reconcile: {args.people} people, {group_count(args.people)} groups, {memberships} memberships; "
            f"source fed as {'a CSV file read by connectors.file' if mode == 'csv' else 'an in-memory Snapshot'}; "
            f"database {url.split(':')[0]}"
        )
        results = {}
        for phase in ("first", "noop", "change"):
            if mode == "csv" and phase != "noop":
                write_csv(Path(work) / "hr.csv", people(args.people, 2 if phase == "change" else 1))
            command = [sys.executable, __file__, "--phase", phase, "--workdir", work, "--mode", mode]
            command += ["--people", str(args.people), "--database-url", url]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            results[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        load = os.getloadavg()[0]
        print(f"load average at the end: {load:.2f} on {os.cpu_count()} CPUs (wall times grow with other load)")
        for phase, figures in results.items():
            aim = (
                (AIMS_AT_A_MILLION if args.people >= 1_000_000 else AIMS)[phase]
                * args.people
                / (1_000_000 if args.people >= 1_000_000 else 100_000)
            )
            rate = args.people / figures["seconds"] if figures["seconds"] else float("inf")
            print(
                f"{phase:>6}: {figures['seconds']:7.2f} s (aim < {aim:.1f} s, ratio {figures['seconds'] / aim:.2f}; "
                f"{figures['cpu_seconds']:.2f} s CPU in this process), "
                f"peak RSS {figures['peak_rss_mib']:7.1f} MiB (aim < 1024), {figures['actions']} actions, "
                f"{figures['staged_changes']} staged changes{' (HELD by the guard)' if figures['held'] else ''}, "
                f"{rate:,.0f} people/s"
                + (
                    f", records built in {figures['read_seconds']:.2f} s (not counted)"
                    if mode == "snapshot"
                    else f" (CSV read {figures['read_seconds']:.2f} s + reconcile {figures['reconcile_seconds']:.2f} s)"
                )
            )
            print(
                "        "
                + "; ".join(
                    f"{name} {step['seconds']:.2f} s ({step['cpu_seconds']:.2f} CPU), peak {step['peak_rss_mib']:.0f} MiB"
                    for name, step in figures["phases"].items()
                )
            )
    return 0


def _fresh_postgres(url: str) -> None:
    """Empty the benchmark's PostgreSQL database (it must be one made for benchmarks)."""
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    connection.close()


if __name__ == "__main__":
    sys.exit(main())
