"""Fixtures for service tests: ``syncd serve`` as a subprocess on a free loopback port, its JSON logs parsed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import PYTHON, ROOT, subprocess_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One ``syncd serve`` subprocess; ``run`` names a test run function (``module:function``) or None for the CLI."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        run: str | None,
        env: dict[str, str],
        wrapper: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        if run is None:
            command = [PYTHON, "-m", "syncd", "--config", str(config), "serve"]
        else:
            command = [PYTHON, "-m", "tests.service.harness", run, "--config", str(config), "serve"]
        command = [*wrapper, *command, "--listen", f"127.0.0.1:{self.port}"]
        command += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}", *args]
        self.log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**subprocess_env(), **env}, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        self.http = requests.Session()
        self.http.trust_env = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=10, **kwargs)

    def metrics(self, **kwargs: Any) -> requests.Response:
        """``GET /metrics`` from the metrics listener (``--metrics-listen``), not the SCIM one."""
        return self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url(path), timeout=30, **kwargs)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"syncd serve exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"syncd serve not ready in {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events so far (every line must be one JSON object), optionally only those named ``name``."""
        parsed = [json.loads(line) for line in self.log_text().splitlines() if line.strip()]
        return [e for e in parsed if name is None or e["event"] == name]

    def wait_event(
        self, name: str, count: int = 1, timeout: float = 30, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(name) if where is None or where(e)]
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {name} within {timeout}s:\n{self.log_text()}")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``syncd serve`` processes; every one still running at the end is stopped."""
    started: list[ServeProcess] = []

    def start(
        config: Path,
        run: str | None = "tests.service.runs:slow",
        wrapper: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        **env: str,
    ) -> ServeProcess:
        """``wrapper``: a command that runs the service's command line (e.g. under a seccomp filter); ``args``: more
        options of ``serve`` (e.g. ``--processes 2``)."""
        log = tmp_path / f"serve-{len(started)}.log"
        process = ServeProcess(config, log, run, {k: str(v) for k, v in env.items()}, wrapper, args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def service_config(
    database_url: str,
    sources: dict[str, str] | None = None,
    *,
    server: str = "",
    extra: str = "",
    folder: Path,
) -> str:
    """A config with org ``acme`` (and ``other``), file sources named by ``sources`` (name → schedule), JSON logs."""
    text = (
        f'[database]\nurl = "{database_url}"\n\n[server]\n{server}\n\n[logging]\nformat = "json"\n\n'
        '[[orgs]]\nslug = "acme"\nname = "Acme"\n\n[[orgs]]\nslug = "other"\nname = "Other"\n\n'
    )
    (folder / "people.csv").write_text("user_name,email\n", encoding="utf-8")
    for name, schedule in (sources or {}).items():
        text += (
            f'[[sources]]\nname = "{name}"\norg = "acme"\nkind = "file"\nschedule = "{schedule}"\n'
            'path = "people.csv"\n\n'
        )
    return text + extra
