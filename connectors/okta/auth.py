"""How requests to Okta are authorized: an API token, or an OAuth 2.0 service app with a signed client assertion.

- API token: ``Authorization: SSWS <token>`` (developer.okta.com, "Create an API token").
- Service app: ``POST {org}/oauth2/v1/token`` with ``grant_type=client_credentials``, the scopes, and a
  ``private_key_jwt`` client assertion — a JWT signed with the app's private key whose ``iss`` and ``sub`` are the
  client id and whose ``aud`` is the token endpoint's full URL, valid for at most an hour, with a unique ``jti``
  (RFC 7523 §2.2 and §3; developer.okta.com, "Implement OAuth for Okta with a service app"). The access token it
  returns (``Authorization: Bearer …``) is cached until shortly before ``expires_in`` runs out and fetched anew when
  an API call answers 401.

Neither class ever puts a secret into an exception message.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from syncd.common.errors import ConnectorError
from syncd.common.redaction import remember

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RENEW_BEFORE_SECONDS = 60
ASSERTION_LIFETIME_SECONDS = 300

PostForm = Callable[[str, dict[str, str]], requests.Response]


class TokenAuth(requests.auth.AuthBase):
    """``Authorization: SSWS <token>``; a 401 is final (the token is wrong, expired or revoked)."""

    fix = "check that token_file/token_env holds an active API token of an admin with read access"

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"SSWS {self._token}"
        return request

    def renew(self, rejected: requests.Response) -> bool:
        return False


class ServiceAppAuth(requests.auth.AuthBase):
    """Client-credentials access tokens for an Okta service app, obtained with a ``private_key_jwt`` assertion."""

    fix = "check client_id, private_key_file (the app's registered key) and the scopes granted to the app"

    def __init__(
        self,
        source: str,
        token_url: str,
        client_id: str,
        private_key_file: str,
        key_id: str | None,
        scopes: tuple[str, ...],
        post_form: PostForm,
    ) -> None:
        self._source = source
        self._token_url = token_url
        self._client_id = client_id
        self._key, self._algorithm = _load_key(source, private_key_file)
        self._key_id = key_id
        self._scopes = scopes
        self._post_form = post_form
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._renew_at = 0.0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._current()}"
        return request

    def renew(self, rejected: requests.Response) -> bool:
        """Forget the access token Okta just rejected with 401, so the next request fetches a new one.

        Several threads may see the same expiry at once; only the first drops the token, the others find a fresh
        one already in place, so one expiry costs one token request.
        """
        with self._lock:
            if rejected.request.headers.get("Authorization") == f"Bearer {self._access_token}":
                self._access_token = None
        return True

    def _current(self) -> str:
        with self._lock:
            if self._access_token is None or time.monotonic() >= self._renew_at:
                self._access_token, lifetime = self._fetch()
                # Renew a minute early (or halfway, for tokens that live less than two minutes), so no request
                # leaves with a token about to expire.
                self._renew_at = time.monotonic() + lifetime - min(RENEW_BEFORE_SECONDS, lifetime / 2)
            return self._access_token

    def assertion(self) -> str:
        """A fresh client assertion JWT (RFC 7523 §3): signed, short-lived, single-use (``jti``)."""
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._key_id} if self._key_id else None
        assertion = jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)
        remember(assertion)
        return assertion

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(self._scopes),
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        response = self._post_form(self._token_url, form)
        body = _json_object(response)
        if response.status_code != 200:
            code = body.get("error") or f"HTTP {response.status_code}"
            detail = body.get("error_description") or ""
            raise ConnectorError(
                f"source {self._source}: Okta refused an access token for client {self._client_id} "
                f"({code}{': ' + _clip(detail) if detail else ''}); {self.fix}"
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ConnectorError(
                f"source {self._source}: the token endpoint {self._token_url} answered without an access_token; "
                "check that url points at the Okta org"
            )
        remember(token)
        lifetime = body.get("expires_in")
        return token, float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 3600.0


def _load_key(source: str, path: str) -> tuple[Any, str]:
    """Read the PEM private key and pick the JWS algorithm its type implies (RS256 or ES256/384/512)."""
    try:
        data = Path(path).read_bytes()
        remember(data)
    except OSError as error:
        raise ConnectorError(
            f"source {source}: cannot read private_key_file {path} ({error.strerror}); check the path and permissions"
        ) from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConnectorError(
            f"source {source}: private_key_file {path} is not an unencrypted PEM private key; "
            "export the service app's key as PKCS#8 PEM without a passphrase"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key, {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, "ES256")
    raise ConnectorError(f"source {source}: private_key_file {path} holds neither an RSA nor an EC key")


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
