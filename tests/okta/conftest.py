"""Fixtures for the Okta connector tests: a running fake org, settings pointing at it, a service-app key pair."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.interface import ReadResult
from connectors.okta import Connector, Settings
from tests.fakes.okta import FakeOkta

TOKEN_ENV = "SYNCD_TEST_OKTA_TOKEN"


@pytest.fixture
def fake() -> Iterator[FakeOkta]:
    with FakeOkta() as server:
        yield server


@pytest.fixture
def settings(fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings for the fake with an API token from the environment; keyword arguments override any key."""
    monkeypatch.setenv(TOKEN_ENV, fake.api_token)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"url": fake.url, "token_env": TOKEN_ENV, "retry_backoff": 0.01}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def read(settings: Callable[..., Settings]) -> Callable[..., ReadResult]:
    """``read(cursor, **settings)``: one connector read against the fake."""

    def run(cursor: str | None = None, **overrides: Any) -> ReadResult:
        return Connector("okta-test", settings(**overrides)).read(cursor)

    return run


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "okta-service-app.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path
