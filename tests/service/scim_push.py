"""Pushing SCIM into a running ``syncd serve`` as an IdP would, and reading the org back through the CLI."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from syncd.store.models import Source
from tests.service.conftest import ServeProcess

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


#: The file source beside SCIM: ``people.csv`` next to the config, read hourly (a run at start).
HR_SOURCE = """
[[sources]]
name = "hr"
org = "acme"
kind = "file"
schedule = "1h"
path = "people.csv"
"""


def acme_config(url: str, *, server: str = "", org: str = "", sources: str = "") -> str:
    """A ``syncd serve`` config: the store at ``url``, JSON logs, org ``acme`` (domain acme.com), and what a test
    adds: ``[server]`` keys, the org's other keys, policy and rules (``org``), and ``sources`` (e.g. :data:`HR_SOURCE`)."""
    server_table = f"[server]\n{server}\n\n" if server else ""
    return (
        f'[database]\nurl = "{url}"\n\n{server_table}[logging]\nformat = "json"\n\n'
        f'[[orgs]]\nslug = "acme"\nname = "Acme"\ndomains = ["acme.com"]\n{org}{sources}'
    )


@dataclass
class Idp:
    """A SCIM client of one org against the service over real HTTP."""

    service: ServeProcess
    token: str

    def send(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201, 204)) -> Any:
        answer = self.service.http.request(
            method,
            self.service.url("/scim/v2" + path),
            data=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"},
            timeout=60,
        )
        wanted = (expect,) if isinstance(expect, int) else expect
        assert answer.status_code in wanted, (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None

    def user(self, email: str, name: str | None = None, **extra: Any) -> str:
        body = {
            "schemas": [USER],
            "userName": email,
            "displayName": name or email.split("@")[0].title(),
            "emails": [{"value": email, "type": "work", "primary": True}],
            "active": True,
            **extra,
        }
        return str(self.send("POST", "/Users", body, 201)["id"])

    def group(self, name: str, members: list[str] = ()) -> str:  # type: ignore[assignment]
        body = {"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members]}
        return str(self.send("POST", "/Groups", body, 201)["id"])

    def patch(self, path: str, *operations: dict[str, Any]) -> Any:
        return self.send("PATCH", path, {"schemas": [PATCH], "Operations": list(operations)})

    def add_members(self, group: str, *ids: str) -> None:
        self.patch(f"/Groups/{group}", {"op": "add", "path": "members", "value": [{"value": i} for i in ids]})

    def remove_member(self, group: str, member: str) -> None:
        self.patch(f"/Groups/{group}", {"op": "remove", "path": f'members[value eq "{member}"]'})

    def disable(self, user: str) -> None:
        self.patch(f"/Users/{user}", {"op": "replace", "path": "active", "value": False})

    def delete(self, user: str) -> None:
        self.send("DELETE", f"/Users/{user}", expect=204)

    def bulk(self, operations: list[dict[str, Any]]) -> Any:
        body = {"schemas": [BULK], "Operations": operations}
        answer = self.send("POST", "/Bulk", body, 200)
        assert all(str(o["status"]).startswith("2") for o in answer["Operations"]), answer
        return answer


def shape(member: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """(status, role, team slugs) of a member."""
    return member["status"], member["role"], tuple(sorted(t["team"] for t in member["teams"]))


def token(cli: Any, config: Any, scope: str = "scim", org: str = "acme") -> str:
    result = cli("--config", str(config), "tokens", "create", "--org", org, "--scope", scope)
    assert result.code == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def wait_for_housekeeping(timeout: float = 30) -> None:
    """Until the org's housekeeping pass has run once more (it claims and releases the ``scim:acme`` lease)."""
    seen = Source.get(Source.name == "scim:acme").lease_until
    deadline = time.monotonic() + timeout
    while Source.get(Source.name == "scim:acme").lease_until == seen:
        assert time.monotonic() < deadline, "no housekeeping pass"
        time.sleep(0.1)
