"""Fixtures for the SCIM suite: two orgs with a scim token each, a Flask client, and a reconciliation spy.

Every test using ``scim`` runs on SQLite and on the real PostgreSQL (through the ``store`` fixture).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import flask
import peewee
import pytest

from syncd import config as config_module

BASE = "/scim/v2"
SCIM_JSON = "application/scim+json"


@dataclass
class Reconciliations:
    """Records syncd.sync.pipeline.reconcile_touched calls (each must come inside a write transaction) and calls through
    to the real reconciler, so every SCIM test also drives the real reconciliation."""

    calls: list[tuple[int, list[str], str]] = field(default_factory=list)

    def keys(self) -> set[str]:
        return {key for _, keys, _ in self.calls for key in keys}

    def clear(self) -> None:
        self.calls.clear()


@dataclass
class Client:
    """A SCIM client of one org: JSON in, (status, body, headers) out."""

    flask_client: Any
    token: str

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = SCIM_JSON,
    ) -> Response:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = content_type
        answer = self.flask_client.open(BASE + path, method=method, data=data, headers=sent, query_string=query)
        payload = json.loads(answer.data) if answer.data else None
        return Response(answer.status_code, payload, dict(answer.headers))

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Response:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> Response:
        return self.request("PUT", path, body, **kwargs)

    def patch(self, path: str, operations: list[dict[str, Any]], **kwargs: Any) -> Response:
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, **attributes}
        answer = self.post("/Users", body)
        assert answer.status == 201, answer.body
        return answer.body

    def create_group(self, display_name: str, members: list[str] = (), **attributes: Any) -> dict[str, Any]:
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": display_name,
            "members": [{"value": m} for m in members],
            **attributes,
        }
        answer = self.post("/Groups", body)
        assert answer.status == 201, answer.body
        return answer.body


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ScimWorld:
    app: flask.Flask
    a: Client
    b: Client
    org_a: Any
    org_b: Any
    reconciliations: Reconciliations
    tokens: dict[str, str]

    def client(self, token: str) -> Client:
        return Client(self.app.test_client(), token)


def make_config(max_body_bytes: int = 1_048_576) -> config_module.Config:
    return config_module.parse({"server": {"max_body_bytes": max_body_bytes}})


@pytest.fixture
def reconciliations(monkeypatch: pytest.MonkeyPatch) -> Reconciliations:
    from syncd.store.db import database
    from syncd.sync import pipeline

    recorder = Reconciliations()
    real = pipeline.reconcile_touched

    def record(config: Any, org_id: int, match_keys: Any, actor: str, now: Any = None, **options: Any) -> int:
        assert database.obj.in_transaction(), "reconcile_touched must run inside the SCIM write transaction"
        keys = list(match_keys)
        assert keys == sorted(set(keys)) and all(keys), keys
        recorder.calls.append((org_id, keys, actor))
        return real(config, org_id, keys, actor, now, **options)

    monkeypatch.setattr(pipeline, "reconcile_touched", record)
    return recorder


@pytest.fixture
def scim(store: peewee.Database, reconciliations: Reconciliations) -> Iterator[ScimWorld]:
    """Orgs ``acme`` and ``globex`` with a scim token each, served by ``scim.create_app``."""
    from scim import create_app
    from syncd.admin import tokens
    from syncd.sync import orgs

    org_a = orgs.create("acme", "Acme", ["acme.com"])
    org_b = orgs.create("globex", "Globex", ["globex.com"])
    _, token_a = tokens.create(org_a, "scim")
    _, token_b = tokens.create(org_b, "scim")
    _, admin_a = tokens.create(org_a, "admin")
    app = create_app(make_config())
    yield ScimWorld(
        app=app,
        a=Client(app.test_client(), token_a),
        b=Client(app.test_client(), token_b),
        org_a=org_a,
        org_b=org_b,
        reconciliations=reconciliations,
        tokens={"a": token_a, "b": token_b, "admin_a": admin_a},
    )
