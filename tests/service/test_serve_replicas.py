"""Two ``syncd serve`` replicas on one real PostgreSQL share the scheduled work through per-source leases."""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

from tests.service.conftest import service_config
from tests.service.runs import recorded

SOURCES = ("pg-a", "pg-b")
STEPS = 3


def _runs(url: str) -> dict[str, dict]:
    runs: dict[str, dict] = {}
    for row in recorded(url):
        run = runs.setdefault(
            row["run"], {"source": row["source"], "owner": row["owner"], "slot": row["slot"], "written": []}
        )
        run["written"].append(row["written_at"])
    return runs


def _processes_of(owner: str) -> list[int]:
    """Live processes started with SYNCD_TEST_OWNER=owner (a replica and its run processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"SYNCD_TEST_OWNER={owner}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_run_each_slot_once_and_take_over_from_a_killed_one(serve, tmp_path, postgres_url):
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS test_run_step")
    config = tmp_path / "syncd.toml"
    config.write_text(
        service_config(postgres_url, dict.fromkeys(SOURCES, "1s"), server="lease_seconds = 2", folder=tmp_path)
    )
    knobs = {"SYNCD_TEST_STEPS": str(STEPS), "SYNCD_TEST_DELAY": "0.1"}
    first = serve(config, SYNCD_TEST_OWNER="first", **knobs)
    second = serve(config, SYNCD_TEST_OWNER="second", **knobs)
    first.wait_ready()
    second.wait_ready()

    def shared() -> bool:
        runs = _runs(postgres_url).values()
        return len(runs) >= 8 and {run["owner"] for run in runs} == {"first", "second"}

    _wait_for(shared, 30, "eight committed runs, shared by both replicas")

    seen = len(first.events("source.run.start"))
    first.wait_event("source.run.start", count=seen + 1)
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = datetime.now(UTC).replace(tzinfo=None)
    _wait_for(lambda: not _processes_of("first"), 60, "the killed replica's run process to exit with it")

    def taken_over() -> bool:
        later = [r for r in _runs(postgres_url).values() if r["owner"] == "second" and r["slot"] > killed_at]
        return {r["source"] for r in later} == set(SOURCES) and len(later) >= 4

    _wait_for(taken_over, 30, "the surviving replica to run both sources after the kill")
    second.stop()

    runs = _runs(postgres_url)
    assert all(len(run["written"]) == STEPS for run in runs.values()), "a killed run left no partial rows"
    by_source: dict[str, list[dict]] = defaultdict(list)
    for run in runs.values():
        by_source[run["source"]].append(run)
    for source in SOURCES:
        slots = [math.floor(run["slot"].replace(tzinfo=UTC).timestamp()) for run in by_source[source]]
        assert len(slots) == len(set(slots)), f"{source}: a one-second slot ran twice"
        spans = sorted((min(run["written"]), max(run["written"])) for run in by_source[source])
        assert all(end < next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), f"{source}: overlap"
