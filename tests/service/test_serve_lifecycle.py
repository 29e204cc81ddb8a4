"""``syncd serve`` as systemd runs it: readiness and watchdog notifications, graceful SIGTERM, SIGHUP reload."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON, subprocess_env
from tests.service.conftest import free_port, service_config
from tests.service.runs import recorded


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    return sock


def _receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams received until one holds the line ``wanted``."""
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return seen


def test_ready_is_notified_once_http_answers_and_watchdog_pings_follow(serve, tmp_path):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path), encoding="utf-8")
    sock = _notify_socket(tmp_path / "notify.sock")
    service = serve(config, run=None, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="300000")

    _receive_until(sock, "READY=1")
    ready = service.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": "ok", "migrations": "ok", "scheduler": "ok"}
    _receive_until(sock, "WATCHDOG=1")

    service.signal(signal.SIGTERM)
    _receive_until(sock, "STOPPING=1")
    assert service.wait() == 0
    assert [e["event"] for e in service.events()][-1] == "service.stopped"


def test_sigterm_during_a_long_run_lets_it_commit_and_starts_nothing_new(serve, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1s"}, server="shutdown_timeout = 20", folder=tmp_path))
    service = serve(config, SYNCD_TEST_STEPS="6", SYNCD_TEST_DELAY="0.25")
    service.wait_event("source.run.start")

    service.signal(signal.SIGTERM)

    assert service.wait() == 0
    rows = recorded(url)
    runs = {row["run"] for row in rows}
    assert len(runs) == 1, "the run in flight finished and no new run started while draining"
    assert len(rows) == 6
    assert {row["pid"] for row in rows} != {service.process.pid}, "the run ran in its own process"
    assert len(service.events("source.run.start")) == 1
    assert service.events("source.run.ok")


def test_sigterm_past_the_shutdown_timeout_rolls_the_run_back_entirely(serve, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1s"}, server="shutdown_timeout = 1", folder=tmp_path))
    service = serve(config, SYNCD_TEST_STEPS="20", SYNCD_TEST_DELAY="0.25")
    service.wait_event("source.run.start")
    time.sleep(0.6)  # a few steps are written inside the open transaction

    service.signal(signal.SIGTERM)

    assert service.wait() == 1
    assert recorded(url) == [], "the interrupted run left no half-applied rows"
    (timeout,) = service.events("service.stop_timeout")
    assert timeout["runs_abandoned"] == "hr"


def test_sighup_reschedules_changed_sources_and_refuses_an_invalid_config(serve, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1h", "gone": "1h"}, folder=tmp_path))
    service = serve(config, SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="0")
    service.wait_ready()

    config.write_text(service_config(url, {"hr": "1s", "ldap": "1s"}, folder=tmp_path))
    service.signal(signal.SIGHUP)
    (reloaded,) = service.wait_event("config.reloaded")
    gone_runs = [e for e in service.events("source.run.start") if e["source"] == "gone"]
    assert (reloaded["added"], reloaded["changed"], reloaded["removed"]) == ("ldap", "hr", "gone")
    service.wait_event("source.run.ok", where=lambda e: e["source"] == "ldap")
    service.wait_event("source.run.ok", where=lambda e: e["source"] == "hr")

    config.write_text(service_config(url, {"hr": "every now and then"}, folder=tmp_path))
    service.signal(signal.SIGHUP)
    (refused,) = service.wait_event("config.reload.refused")
    assert "sources[0].schedule" in refused["reason"]
    ldap_runs = len(service.events("source.run.ok"))
    service.wait_event("source.run.ok", count=ldap_runs + 2)
    assert service.get("/readyz").status_code == 200
    assert len(service.events("config.reload.refused")) == 1
    assert [e for e in service.events("source.run.start") if e["source"] == "gone"] == gone_runs
    assert all(e["ts"] < reloaded["ts"] for e in gone_runs), "a removed source no longer runs"


def test_an_unreachable_database_stops_start_with_one_line_that_hides_the_password(tmp_path):
    config = tmp_path / "syncd.toml"
    config.write_text('[database]\nurl = "postgresql://bob:sekret-pw@127.0.0.1:1/nodb"\n')
    # Free addresses, not the defaults (127.0.0.1:8080 and :9464): another test or program may hold those, and a busy
    # address is refused before the store is opened.
    listen = ["--listen", f"127.0.0.1:{free_port()}", "--metrics-listen", f"127.0.0.1:{free_port()}"]
    result = subprocess.run(
        [PYTHON, "-m", "syncd", "--config", str(config), "serve", *listen],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    # The same line as every other command's (syncd.store.db.unavailable): the URL without its password.
    assert line.startswith("syncd: error: database postgresql://bob@127.0.0.1:1/nodb: cannot open the store")
    assert "sekret-pw" not in result.stderr


def test_a_busy_listen_address_stops_start_with_one_line(serve, tmp_path):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [PYTHON, "-m", "syncd", "--config", str(config), "serve", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )
    assert result.returncode == 1
    # Checked before the store is opened or anything is logged, and named by the flag that gave it.
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"syncd: error: --listen 127.0.0.1:{port}: cannot listen")
