"""``syncd serve`` under the shipped unit's system call filter, and a replica whose runs cannot start.

The filter is systemd/syncd.service's own ``SystemCallFilter=`` lines, loaded with libseccomp by
``tests/sandbox.py`` (no root or running systemd needed): ``@resources`` calls such as ``setpriority`` fail with
EPERM there, as they do under systemd.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import PYTHON, ROOT
from tests.service.conftest import service_config

UNIT = ROOT / "systemd" / "syncd.service"
SANDBOX = (PYTHON, "-m", "tests.sandbox", str(UNIT))


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_source_run_succeeds_under_the_units_system_call_filter(serve, tmp_path, store, database_url, processes):
    """Also with ``--processes 2``: the supervisor starts its HTTP processes inside the filter too."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(database_url, folder=tmp_path) + _file_source("hr"), encoding="utf-8")
    (tmp_path / "people.csv").write_text("user_name,email\nada,ada@acme.com\n", encoding="utf-8")
    service = serve(config, run=None, wrapper=SANDBOX, args=("--processes", processes))
    service.wait_ready()

    (ok,) = service.wait_event("source.run.ok", where=lambda e: e["source"] == "hr")
    assert ok["result"] == "ok"
    assert not service.events("source.run.error")
    (kept,) = service.events("source.run.priority_kept")
    assert "setpriority refused" in kept["reason"], "the sandbox really refused the call"
    assert service.get("/readyz").status_code == 200
    if processes == "2":
        assert len(service.wait_event("service.http_process.ready", count=2)) == 2


def test_readyz_and_a_metric_say_when_runs_keep_failing_to_start(serve, tmp_path):
    """The run function's module cannot be imported in a run process (tests/service/unstartable.py): every run
    process dies before it starts, as under a sandbox that refuses what start-up needs. The service itself runs."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1s"}, folder=tmp_path))
    service = serve(config, run="tests.service.unstartable:run")
    service.wait_ready()

    ready = _wait_for_status(service, "/readyz", 503, timeout=60)
    scheduler = ready.json()["checks"]["scheduler"]
    assert scheduler.startswith("runs failing to start: ")
    assert "before it started" in scheduler
    text = service.metrics().text
    failures = re.search(r'^syncd_source_run_start_failures_total\{source="hr"\} (\S+)$', text, re.M)
    assert failures and float(failures.group(1)) >= 3, text
    in_a_row = re.search(r"^syncd_run_start_failures_in_a_row (\S+)$", text, re.M)
    assert in_a_row and float(in_a_row.group(1)) >= 3
    assert service.get("/healthz").status_code == 200, "the process itself answers: a restart would not help"


def _wait_for_status(service, path: str, status: int, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = service.get(path)
        if answer.status_code == status:
            return answer
        assert service.process.poll() is None, service.log_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} did not answer {status} within {timeout}s:\n{service.log_text()}")


def _file_source(name: str) -> str:
    return f'[[sources]]\nname = "{name}"\norg = "acme"\nkind = "file"\nschedule = "1h"\npath = "people.csv"\n\n'
