"""Fixtures for the Entra connector: the fake Graph over HTTPS, settings pointing at it, and a connector whose
waits are recorded instead of slept (tests assert the waits asked for, never wall-clock time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.azure import Connector, Settings
from tests.fakes.graph import FakeGraph


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    with FakeGraph(tmp_path / "graph") as fake:
        yield fake


@pytest.fixture
def secret_file(tmp_path: Path, graph: FakeGraph) -> Path:
    path = tmp_path / "client_secret"
    path.write_text(graph.client_secret + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_settings(graph: FakeGraph, secret_file: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "tenant_id": graph.tenant_id,
            "client_id": graph.client_id,
            "client_secret_file": str(secret_file),
            "ca_file": str(graph.ca_file),
            "authority_host": graph.url,
            "graph_url": graph.url,
            "page_size": 50,
        }
        if "client_secret_env" in overrides or "certificate_file" in overrides:
            values.pop("client_secret_file")
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_connector(make_settings: Callable[..., Settings]) -> Callable[..., Connector]:
    def make(**overrides: Any) -> Connector:
        connector = Connector("entra", make_settings(**overrides))
        connector.throttle.sleep = lambda seconds: None
        return connector

    return make


@pytest.fixture
def connector(make_connector: Callable[..., Connector]) -> Connector:
    return make_connector()
