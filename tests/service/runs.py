"""Controllable run functions for service tests: each stands in for ``syncd.sync.pipeline.run_source``.

They do real work in the real store, in one write transaction like the pipeline: a run writes ``steps`` rows into
``test_run_step`` one at a time (sleeping ``delay`` seconds before each), so a run that is interrupted before its
commit leaves no row at all and a committed run leaves exactly ``steps`` rows. Knobs come from environment
variables because the service runs in a subprocess.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee

from connectors.interface import ConnectorError
from syncd.config import Config
from syncd.store.db import database
from syncd.store.tx import write_transaction
from syncd.sync.pipeline import RunResult


class RunStep(peewee.Model):
    run = peewee.CharField()
    source = peewee.CharField()
    owner = peewee.CharField(default="")
    pid = peewee.IntegerField(default=0)
    slot = peewee.DateTimeField()
    step = peewee.IntegerField()
    written_at = peewee.DateTimeField()

    class Meta:
        database = database
        table_name = "test_run_step"


def steps() -> int:
    return int(os.environ.get("SYNCD_TEST_STEPS", "3"))


def slow(
    config: Config, source_name: str, *, dry_run: bool, full: bool, actor: str | None, now: datetime | None
) -> RunResult:
    """Write ``steps`` rows in one transaction, ``SYNCD_TEST_DELAY`` seconds apart; fail while the fail file exists."""
    fail_file = os.environ.get("SYNCD_TEST_FAIL_FILE")
    if fail_file and Path(fail_file).exists():
        raise ConnectorError(
            f"source {source_name}: bind to ldap://127.0.0.1:1 failed (password=hunter2-secret); check bind_password_file"
        )
    delay = float(os.environ.get("SYNCD_TEST_DELAY", "0.1"))
    run = uuid.uuid4().hex
    RunStep.create_table(safe=True)
    org = config.source(source_name).org
    with write_transaction():
        for step in range(steps()):
            time.sleep(delay)
            RunStep.create(
                run=run,
                source=source_name,
                owner=os.environ.get("SYNCD_TEST_OWNER", ""),
                pid=os.getpid(),
                slot=now,
                step=step,
                written_at=datetime.utcnow(),
            )
    return RunResult(source=source_name, org=org, actions=steps(), applied=True)


def recorded(db_url: str) -> list[dict[str, Any]]:
    """Every committed step row, read through a separate connection (the test process's own store)."""
    from syncd.store import open_database

    open_database(db_url)
    if not database.obj.table_exists("test_run_step"):
        return []
    rows = list(RunStep.select().order_by(RunStep.id).dicts())
    database.obj.close()
    return rows


def crash(
    config: Config, source_name: str, *, dry_run: bool, full: bool, actor: str | None, now: datetime | None
) -> RunResult:
    """Die with exit code 3 in the middle of the transaction, as a segfault or the OOM killer would."""
    RunStep.create_table(safe=True)
    with write_transaction():
        RunStep.create(run="crash", source=source_name, slot=now, step=0, written_at=datetime.utcnow())
        os._exit(3)
