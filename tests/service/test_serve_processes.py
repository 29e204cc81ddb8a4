"""``syncd serve --processes 2``: HTTP processes on one listener under a supervisor that keeps the scheduler.

The real command with the real pipeline and config: requests are answered by two different processes (the ``pid``
field of their ``http.request`` lines), their counters are summed on the supervisor's /metrics, SIGHUP reaches every
HTTP process, a killed one is replaced, /readyz in them follows the supervisor's scheduler, run-now reaches a run,
SIGTERM drains them all, and concurrent SCIM writes from several processes on SQLite all succeed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from syncd.service.admin_client import trigger_sync
from tests.service.conftest import service_config
from tests.service.scim_push import USER

PROCESSES = ("--processes", "2")


def _token(cli, config, scope: str) -> str:
    result = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", scope)
    assert result.code == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _scim_lookups_total(service) -> float:
    """From the text exposition; the OpenMetrics one must parse too (the summed families keep its sample order)."""
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    assert list(openmetrics_families(service.metrics(headers=accept).text))
    families = text_string_to_metric_families(service.metrics().text)
    return sum(
        sample.value
        for family in families
        if family.name == "syncd_http_requests"
        for sample in family.samples
        if sample.name == "syncd_http_requests_total" and sample.labels["endpoint"] == "/scim/v2/Users"
    )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_processes_answer_are_summed_reload_are_replaced_and_drain(serve, tmp_path, cli):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path))
    scim, admin = _token(cli, config, "scim"), _token(cli, config, "admin")
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    ready = service.wait_event("service.http_process.ready", count=2)
    children = {event["pid"] for event in ready}
    assert len(children) == 2 and service.process.pid not in children

    # A new connection per request, so the kernel hands them to either process.
    sent = 0
    while sent < 400:
        answer = requests.get(
            service.url("/scim/v2/Users?filter=userName%20eq%20%22nobody@acme.com%22"),
            headers={"Authorization": f"Bearer {scim}", "Connection": "close"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        sent += 1
        answered_by = {e["pid"] for e in service.events("http.request") if e["endpoint"] == "/scim/v2/Users"}
        if answered_by == children and sent >= 20:
            break
    assert answered_by == children, "both HTTP processes answered SCIM"
    assert _scim_lookups_total(service) == sent, "the supervisor's /metrics sums the counters of both processes"

    service.wait_event("source.run.ok")  # the supervisor's first scheduled run, whose lease would answer 409
    outcome = trigger_sync(service.url(""), admin, "hr")
    assert outcome["result"] == "ok", outcome

    config.write_text(config.read_text() + '\n[[orgs]]\nslug = "late"\nname = "Late"\n')
    service.signal(signal.SIGHUP)
    reloaded = service.wait_event("config.reloaded", count=3)
    assert {event.get("pid") for event in reloaded} >= children, "every HTTP process took the new config"

    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    (replaced,) = service.wait_event("service.http_process.replaced")
    assert replaced["child_pid"] == victim
    ready = service.wait_event("service.http_process.ready", count=3)
    children = {event["pid"] for event in ready} - {victim}
    assert len(children) == 2
    assert service.get("/readyz").status_code == 200

    service.signal(signal.SIGTERM)
    assert service.wait() == 0
    stopped = {event.get("pid") for event in service.events("service.stopped")}
    assert stopped >= children, "every HTTP process drained and said so"


def test_readyz_in_the_http_processes_follows_the_supervisors_scheduler(serve, tmp_path):
    """The supervisor stopped (SIGSTOP) publishes no health: its HTTP processes answer 503 until it runs again."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    service.wait_event("service.http_process.ready", count=2)
    service.signal(signal.SIGSTOP)
    try:
        _wait_for(lambda: service.get("/readyz").status_code == 503, 20, "/readyz 503 with the supervisor stopped")
        assert service.get("/readyz").json()["checks"]["scheduler"] == "not running"
    finally:
        service.signal(signal.SIGCONT)
    _wait_for(lambda: service.get("/readyz").status_code == 200, 20, "/readyz 200 again")


def test_concurrent_scim_writes_from_two_processes_on_sqlite_all_succeed(serve, tmp_path, cli):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    token = _token(cli, config, "scim")
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    service.wait_event("service.http_process.ready", count=2)

    def create(client: int) -> list[int]:
        with requests.Session() as session:
            session.trust_env = False
            # A connection per request: kept-alive ones may all land in the process that happened to accept first.
            session.headers.update(
                {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json", "Connection": "close"}
            )
            return [
                session.post(
                    service.url("/scim/v2/Users"),
                    data=json.dumps({"schemas": [USER], "userName": f"u{client}-{i}@acme.com"}),
                    timeout=60,
                ).status_code
                for i in range(10)
            ]

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for answers in pool.map(create, range(8)) for status in answers]
    assert statuses == [201] * 80
    assert len({e["pid"] for e in service.events("http.request") if e["method"] == "POST"}) == 2


def test_processes_out_of_range_is_refused_in_one_line_naming_the_option(tmp_path, cli):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    result = cli("--config", str(config), "serve", "--processes", "0")
    assert result.code != 0
    assert result.stderr.strip().splitlines() == ["syncd: error: --processes: expected 1 to 64, got 0"]


def test_only_the_supervisor_notifies_systemd(serve, tmp_path):
    """NotifyAccess=main: every datagram on the notify socket comes from the supervisor's pid (SCM_CREDENTIALS)."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(30)
    service = serve(config, run=None, args=PROCESSES, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    senders: dict[str, set[int]] = {}

    def receive_until(wanted: str) -> None:
        while True:
            data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            (pid,) = [struct.unpack("3i", raw[:12])[0] for _, kind, raw in ancillary if kind == socket.SCM_CREDENTIALS]
            for line in data.decode().splitlines():
                senders.setdefault(line.split("=")[0], set()).add(pid)
            if wanted in data.decode().splitlines():
                return

    receive_until("READY=1")
    service.wait_event("service.http_process.ready", count=2)
    service.signal(signal.SIGHUP)
    service.wait_event("config.reloaded", count=3)
    service.signal(signal.SIGTERM)
    receive_until("STOPPING=1")
    assert service.wait() == 0
    assert {pid for pids in senders.values() for pid in pids} == {service.process.pid}
    assert {"READY", "RELOADING", "STOPPING"} <= set(senders)


def test_http_processes_drain_and_exit_when_the_supervisor_is_killed(serve, tmp_path):
    """No orphan keeps serving without a scheduler: an HTTP process whose supervisor is gone drains and exits."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    children = {event["pid"] for event in service.wait_event("service.http_process.ready", count=2)}
    service.signal(signal.SIGKILL)
    service.wait()
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 20, "the HTTP processes to exit")
    gone = [event for event in service.events("service.stopped") if event.get("signal") == "supervisor gone"]
    assert {event["pid"] for event in gone} == children


def test_only_the_supervisor_reads_the_config_file(serve, tmp_path):
    """An invalid file is refused once, by the supervisor, and its HTTP processes serve on with the running config;
    a SIGHUP sent straight to an HTTP process makes it take nothing but the supervisor's config."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    service = serve(config, run=None, args=PROCESSES)
    service.wait_ready()
    child = min(event["pid"] for event in service.wait_event("service.http_process.ready", count=2))
    config.write_text("[server]\nprocesses = 0\n")
    service.signal(signal.SIGHUP)
    (refused,) = service.wait_event("config.reload.refused")
    assert "pid" not in refused and refused["reason"].startswith("server.processes")
    os.kill(child, signal.SIGHUP)
    service.signal(signal.SIGTERM)
    assert service.wait() == 0
    assert len(service.events("config.reload.refused")) == 1
    assert not service.events("config.reloaded")
