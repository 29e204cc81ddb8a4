"""The WAL checkpoint of ``syncd serve`` on SQLite (docs/architecture.md, "SQL and the two databases"): its
connections never checkpoint when they commit (``wal_autocheckpoint`` 0), one checkpointer thread copies the WAL
into the database and empties the WAL file when writes pause, and checkpoints a last time on SIGTERM. Through the
real command over HTTP, with one process and with HTTP processes (``--processes 2``). SQLite only: PostgreSQL's
server checkpoints on its own and serve starts no checkpointer there."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.service.conftest import service_config
from tests.service.scim_push import USER

WRITES = 120
PAGE_BYTES = 4096


def wal_bytes(database: Path) -> int:
    wal = database.with_name(database.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def wal_emptied(service, after: int = 0) -> list[dict]:
    """Poll the log until the checkpointer has emptied the WAL file after copying pages (``after`` such lines
    seen before)."""
    return service.wait_event(
        "store.checkpoint", count=after + 1, timeout=60, where=lambda e: e["mode"] == "truncate" and e["pages"] > 0
    )


@pytest.mark.parametrize("processes", [1, 2])
def test_scim_writes_leave_the_checkpoint_to_the_checkpointer_and_the_wal_stays_bounded(
    serve, tmp_path, cli, sqlite_store, sqlite_url, processes
):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(sqlite_url, folder=tmp_path))
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    token = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "scim").stdout.split()[-1]
    service = serve(config, run=None, args=("--processes", str(processes)))
    service.wait_ready()
    (started,) = service.wait_event("store.checkpointer.started")
    assert started["autocheckpoint"] == 0

    http = requests.Session()
    http.trust_env = False
    http.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
    for round_ in range(2):
        for i in range(WRITES):
            body = {"schemas": [USER], "userName": f"u{round_}-{i}@acme.com", "displayName": f"User {i} " + "x" * 200}
            answer = http.post(service.url("/scim/v2/Users"), data=json.dumps(body), timeout=30)
            assert answer.status_code == 201, answer.text
        line = wal_emptied(service, after=round_)[-1]
        assert line["wal_pages_max"] >= line["pages"] > 0
        deadline = time.monotonic() + 30
        while wal_bytes(database) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # a housekeeping write may land after the emptying; the next quiet tick empties again
        assert wal_bytes(database) < 100 * PAGE_BYTES

    service.signal(signal.SIGTERM)
    assert service.wait() == 0
    (final,) = service.events("store.checkpoint")[-1:]
    assert final["mode"] == "final" and final["wal_emptied"] is True
    assert wal_bytes(database) == 0
