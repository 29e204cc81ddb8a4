"""A source run in its own process, for the crash tests: ``python -m tests.crash_run DATABASE_URL ROUND [BATCH]``.

Round 1 is a first sync; round 2 changes people, groups and roles. ``SYNCD_FAULT`` kills it at a step. ``BATCH``
sets the members per apply batch and the keys per move of a read staged apart (SQLite), so that a small run
crosses batch and move boundaries.
"""

from __future__ import annotations

import sys
from datetime import datetime

from connectors.interface import GroupRecord
from syncd.store import open_database, staging_area, upgrade
from syncd.sync import pipeline
from tests.directory import declare, make_config, snapshot, user

NOW = datetime(2026, 11, 2, 9, 0, 0)


def read(round_: int):
    if round_ == 1:
        people = [user(f"p{i}", "Staff", *(("Engineering",) if i % 3 == 0 else ())) for i in range(30)]
        return snapshot(*people, groups=(GroupRecord("IT Admins", "IT Admins"),), cursor="r1")
    people = [user(f"p{i}", "Staff", *(("IT Admins",) if i < 5 else ())) for i in range(3, 30)]
    people += [user(f"n{i}", "Engineering") for i in range(3)]
    return snapshot(*people, cursor="r2")


def main(url: str, round_: int, batch: int | None = None) -> None:
    if batch is not None:
        pipeline.BATCH_MEMBERS = batch
        staging_area.RANGE_KEYS = batch
    open_database(url)
    upgrade()
    config = declare(make_config(url))
    result = pipeline.apply_read(config, "hr", read(round_), now=NOW)
    print(f"applied {result.actions}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
