"""``python -m syncd serve`` end to end with the real pipeline and file connector: scheduled and manual runs,
and SIGTERM in the middle of a real sync."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pytest

from syncd.service.admin_client import trigger_sync
from syncd.sync import pipeline

PEOPLE = 8000
"""Several apply batches (``pipeline.BATCH_MEMBERS``), so SIGTERM may land between two."""


def _write_people(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["employee id", "email", "name", "department", "groups"])
        for i in range(count):
            writer.writerow([f"E{i:05d}", f"p{i:05d}@acme.com", f"Person {i}", "Sales", f"G{i % 50};Staff"])


def _config(tmp_path: Path, schedule: str, server: str = "") -> Path:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "s.db"}"\n\n[server]\n{server}\n\n[logging]\nformat = "json"\n\n'
        '[[orgs]]\nslug = "acme"\nname = "Acme"\ndomains = ["acme.com"]\n[orgs.policy]\nguard_max_percent = 100\n'
        "guard_max_count = 100000\n\n"
        f'[[sources]]\nname = "hr"\norg = "acme"\nkind = "file"\nschedule = "{schedule}"\npath = "people.csv"\n',
        encoding="utf-8",
    )
    return config


def _members(cli, config: Path) -> list[dict]:
    result = cli("--config", str(config), "members", "list", "--org", "acme", "--format", "json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def _last_success(cli, config: Path) -> str | None:
    result = cli("--config", str(config), "sources", "list", "--format", "json")
    assert result.code == 0, result.stderr
    (hr,) = [s for s in json.loads(result.stdout) if s["name"] == "hr"]
    return hr["last_success_at"]


def test_scheduled_and_manual_runs_apply_a_file_source_through_the_pipeline(serve, tmp_path, cli):
    _write_people(tmp_path / "people.csv", 3)
    config = _config(tmp_path, "1h")
    token = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "admin").stdout.split()[-1]
    service = serve(config, run=None)
    (ran,) = service.wait_event("source.run.ok")
    assert ran["result"] == "ok" and ran["full"] is True

    again = trigger_sync(service.url(""), token, "hr")

    assert again["result"] == "ok" and again["actions"] == 0, "an unchanged file changes nothing"
    service.stop()
    members = _members(cli, config)
    assert sorted(m["email"] for m in members) == ["p00000@acme.com", "p00001@acme.com", "p00002@acme.com"]
    assert all(m["status"] == "active" and m["sources"] == ["hr"] for m in members)
    assert cli("--config", str(config), "audit", "verify", "--org", "acme").code == 0


@pytest.mark.parametrize("timeout", [1, 60])
def test_sigterm_during_a_real_sync_applies_all_of_it_or_none(serve, tmp_path, cli, timeout):
    _write_people(tmp_path / "people.csv", PEOPLE)
    config = _config(tmp_path, "1h", server=f"shutdown_timeout = {timeout}")
    service = serve(config, run=None)
    service.wait_event("source.run.start")
    time.sleep(0.5)

    service.signal(signal.SIGTERM)
    code = service.wait(timeout + 60)

    members = _members(cli, config)
    if code == 0:
        assert len(members) == PEOPLE and service.events("source.run.ok")
        assert _last_success(cli, config) is not None
    else:
        assert code == 1 and timeout == 1 and service.events("service.stop_timeout")
        # The run may have committed its last batch in the instant between the timeout and its process being
        # ended: then all of it is there, with its cursor; otherwise whole apply batches are (none, or some of
        # pipeline.BATCH_MEMBERS members each) and the cursor is not, and the next run finishes the job.
        committed = _last_success(cli, config) is not None
        if committed:
            assert len(members) == PEOPLE
        else:
            assert len(members) % pipeline.BATCH_MEMBERS == 0 and len(members) < PEOPLE
            assert cli("--config", str(config), "audit", "verify", "--org", "acme").code == 0
            assert cli("--config", str(config), "sync", "hr").code == 0
            assert len(_members(cli, config)) == PEOPLE
    assert cli("--config", str(config), "audit", "verify", "--org", "acme").code == 0
    if timeout == 60:
        assert code == 0, "a generous shutdown timeout lets the run commit"
