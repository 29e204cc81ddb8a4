"""Audit ledger and file source at scale: prints times, throughput and peak RSS (no pass/fail bars in tests).

    python benchmarks/bench_audit.py [--entries 200000] [--database-url sqlite:///...|postgresql://...]

Figures: appending N member entries; reading them back plainly (the baseline); ``verify`` and its ratio to the
baseline; ``audit export --format jsonl`` in a child process at N/4 and N entries (peak RSS should not grow with N:
the export streams); ``members_at``; and reading a 100,000-row HR CSV with the file connector.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.file import Connector, Settings  # noqa: E402
from syncd.admin import history  # noqa: E402
from syncd.store import open_database, upgrade  # noqa: E402
from syncd.store.models import LedgerEntry  # noqa: E402
from syncd.sync import ledger, orgs  # noqa: E402


def timed(label: str, action, count: int | None = None):
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    rate = f"  ({count / seconds:,.0f}/s)" if count else ""
    print(f"{label:<44} {seconds:8.2f} s{rate}")
    return result, seconds


def fill(org_id: int, count: int, start: datetime) -> None:
    chain = ledger.head(org_id)
    batch: list[dict] = []
    for i in range(count):
        email = f"user{i % 50_000}@acme.com"
        state = {
            "email": email,
            "user_name": email,
            "display_name": f"User {i}",
            "status": "active",
            "role": "member" if i % 7 else "admin",
            "pinned": False,
            "teams": [{"team": f"team-{i % 300}", "role": "member"}],
        }
        batch.append(
            ledger.make_entry(
                org_id,
                chain,
                actor="source:hr",
                action="member.update",
                target=f"member:{email}",
                before=None,
                after=state,
                reason="benchmark",
                at=start + timedelta(seconds=i),
            )
        )
        if len(batch) == 5000:
            ledger.insert_rows(batch)
            batch = []
    ledger.insert_rows(batch)


_CHILD = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
    "sys.argv = ['syncd'] + sys.argv[1:]\n"
    "runpy.run_module('syncd', run_name='__main__')\n"
)


def export_child(config: Path, slug: str) -> tuple[float, int]:
    """Run ``syncd audit export`` in a child that reports its own peak RSS (KiB) on stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    with open(os.devnull, "w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, "--config", str(config), "audit", "export", "--org", slug],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=True,
        )
    return time.perf_counter() - start, int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-audit-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    open_database(url)
    upgrade()
    config = work / "syncd.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    print(f"database {url.split('://')[0]}, {args.entries:,} entries, in {work}")
    small = orgs.create(f"small-{os.getpid()}", "Small")
    big = orgs.create(f"big-{os.getpid()}", "Big")
    start = datetime(2026, 1, 1)
    timed(f"append {args.entries // 4:,} entries (small org)", lambda: fill(small.id, args.entries // 4, start))
    _, _ = timed(f"append {args.entries:,} entries", lambda: fill(big.id, args.entries, start), args.entries)

    def plain_read() -> int:
        return sum(1 for _ in LedgerEntry.select().where(LedgerEntry.org == big.id).tuples().iterator())

    _, baseline = timed("baseline: read every entry", plain_read, args.entries)
    result, verify_seconds = timed("audit verify", lambda: ledger.verify(big.id), args.entries)
    assert result.ok, result
    print(f"{'verify / baseline':<44} {verify_seconds / baseline:8.2f} x")
    small_seconds, small_rss = export_child(config, small.slug)
    print(
        f"{'export jsonl ' + format(args.entries // 4, ',') + ' (child)':<44} {small_seconds:8.2f} s  peak RSS {small_rss / 1024:.0f} MiB"
    )
    big_seconds, big_rss = export_child(config, big.slug)
    print(
        f"{'export jsonl ' + format(args.entries, ',') + ' (child)':<44} {big_seconds:8.2f} s  peak RSS {big_rss / 1024:.0f} MiB"
    )
    members, _ = timed("members_at (50,000 members)", lambda: history.members_at(big.id, start + timedelta(days=30)))
    assert len(members) == min(50_000, args.entries)

    csv_path = work / "hr.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("Employee ID,Email,First Name,Last Name,Department,Manager,Status,Groups\n")
        for i in range(100_000):
            manager = "" if i == 0 else str(i // 10)
            out.write(
                f"{i},u{i}@acme.com,U,{i},Dept {i % 40},{manager},active,Group {i % 2000};Group {(i * 7) % 2000}\n"
            )
    snapshot, _ = timed(
        "file connector: 100,000-row CSV", lambda: Connector("hr", Settings(path=str(csv_path))).read(None), 100_000
    )
    assert snapshot.complete and len(snapshot.users) == 100_000
    print(f"{'peak RSS (this process)':<44} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MiB")


if __name__ == "__main__":
    main()
