"""The keep-alive SCIM client, user body and seeding shared by the ``syncd serve`` benchmarks (bench_serve.py,
bench_workers.py): one process drives one connection, as an IdP's provisioning worker does."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path
from typing import Any


class Scim:
    """A keep-alive SCIM client for one process."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body) if body is not None else None
        try:
            self.connection.request(method, path, body=payload, headers=self.headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return 0, None
        return response.status, json.loads(data) if data else None


def user_body(user_name: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "displayName": user_name.split("@")[0],
        "emails": [{"value": user_name, "primary": True, "type": "work"}],
        "active": True,
    }


def seed(port: int, token: str, count: int, who: str) -> list[tuple[str, str]]:
    """Create ``count`` users; (userName, id) of each. ``who`` names the benchmark in the error."""
    client = Scim(port, token)
    seeded = []
    for i in range(count):
        name = f"seed{i:04d}@scim.example"
        status, body = client.call("POST", "/scim/v2/Users", user_body(name))
        if status != 201:
            raise SystemExit(f"{who}: seeding SCIM user {name} answered {status}: {body}")
        seeded.append((name, body["id"]))
    return seeded


def wait_ready(port: int, server: subprocess.Popen[bytes], log_path: Path, who: str) -> None:
    """Wait up to a minute for ``/readyz`` of the ``syncd serve`` started as ``server``; its log on failure."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{who}: syncd serve exited:\n{log_path.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{who}: syncd serve did not become ready:\n{log_path.read_text()}")
