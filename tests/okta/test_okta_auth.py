"""The OAuth 2.0 service app: a private_key_jwt client assertion, expiring access tokens, and clear refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.interface import ReadResult, Snapshot
from syncd.common.errors import ConnectorError
from tests.fakes.okta import FakeOkta

SCOPES = ("okta.users.read", "okta.groups.read", "okta.logs.read")


@pytest.fixture
def service_app(fake: FakeOkta, rsa_key: rsa.RSAPrivateKey, key_file: Path) -> dict[str, object]:
    fake.register_client("0oa-service-app", rsa_key.public_key(), SCOPES)
    for i in range(450):
        fake.add_user(f"u{i}.x@acme.com")
    fake.add_group("Staff")
    return {"token_env": None, "client_id": "0oa-service-app", "private_key_file": str(key_file)}


def test_service_app_reads_with_an_access_token_from_a_signed_assertion(
    fake: FakeOkta, read: Callable[..., ReadResult], service_app: dict[str, object]
) -> None:
    snapshot = read(None, **service_app)

    assert isinstance(snapshot, Snapshot) and len(snapshot.users) == 450
    assert fake.tokens_issued == 1
    assert fake.count("/oauth2/v1/token", method="POST") == 1


def test_an_expired_access_token_is_renewed_and_the_read_completes(
    fake: FakeOkta, read: Callable[..., ReadResult], service_app: dict[str, object]
) -> None:
    fake.expire_tokens_after = 2

    snapshot = read(None, **service_app)

    assert isinstance(snapshot, Snapshot) and len(snapshot.users) == 450
    assert 401 in [s.status for s in fake.seen]  # the expiry really hit a request (or two, running side by side)
    assert fake.tokens_issued == 2  # and cost exactly one new token


def test_access_tokens_are_renewed_before_they_run_out(
    fake: FakeOkta, read: Callable[..., ReadResult], service_app: dict[str, object]
) -> None:
    fake.token_lifetime = 1.0
    fake.latency = 0.1

    snapshot = read(None, max_concurrency=1, page_size=100, **service_app)

    assert isinstance(snapshot, Snapshot) and len(snapshot.users) == 450
    assert fake.tokens_issued >= 2  # seven requests of 100 ms outlive a one-second token ...
    assert 401 not in [s.status for s in fake.seen]  # ... and none was sent with an expiring one


def test_an_assertion_signed_with_another_key_is_refused_clearly(
    fake: FakeOkta, read: Callable[..., ReadResult], service_app: dict[str, object]
) -> None:
    fake.register_client("0oa-service-app", rsa.generate_private_key(65537, 2048).public_key(), SCOPES)

    with pytest.raises(ConnectorError) as caught:
        read(None, **service_app)

    message = str(caught.value)
    assert message.startswith("source okta-test: Okta refused an access token for client 0oa-service-app")
    assert "invalid_client" in message and "private_key_file" in message
    assert "eyJ" not in message  # no JWT, no token


def test_a_scope_the_app_was_not_granted_is_named(
    fake: FakeOkta, read: Callable[..., ReadResult], service_app: dict[str, object], rsa_key: rsa.RSAPrivateKey
) -> None:
    fake.register_client("0oa-service-app", rsa_key.public_key(), ("okta.users.read",))

    with pytest.raises(ConnectorError) as caught:
        read(None, **service_app)

    assert "invalid_scope" in str(caught.value) and "okta.groups.read" in str(caught.value)


def test_the_assertion_is_addressed_to_the_token_endpoint_and_single_use(
    fake: FakeOkta, service_app: dict[str, object], settings: Callable[..., object]
) -> None:
    import jwt

    from connectors.okta.client import OktaClient

    with OktaClient("okta-test", settings(**service_app)) as client:  # type: ignore[arg-type]
        first, second = client.auth.assertion(), client.auth.assertion()  # type: ignore[union-attr]

    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["aud"] == f"{fake.url}/oauth2/v1/token"
    assert claims["iss"] == claims["sub"] == "0oa-service-app"
    assert claims["exp"] - claims["iat"] <= 3600
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_an_unreadable_private_key_file_is_named(read: Callable[..., ReadResult], tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")

    with pytest.raises(ConnectorError) as caught:
        read(None, token_env=None, client_id="0oa-x", private_key_file=str(bad))

    assert str(bad) in str(caught.value) and "PEM" in str(caught.value)
