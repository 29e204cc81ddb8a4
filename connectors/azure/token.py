"""Access tokens for Graph, by the OAuth 2.0 client credentials grant through msal.

msal caches the token until five minutes before it expires and remembers a 429/5xx answer for its Retry-After, so
nothing here retries a token request (docs/architecture.md, "Peers"). msal ignores ``verify=`` when
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are set; it gets an explicit session with ``trust_env=False`` so that
``ca_file`` (or the system store) always decides. Refusals are explained from their AADSTS code
("Microsoft Entra authentication and authorization error codes") and never carry the credential.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msal
import requests

from connectors.azure.settings import Settings
from connectors.interface import read_secret
from syncd.common.errors import ConnectorError
from syncd.common.redaction import remember

#: What to check for the AADSTS codes an unattended client-credentials app meets.
AADSTS_ADVICE = {
    "AADSTS7000215": "the client secret is wrong (use the secret's value, not its id); check client_secret_file/env",
    "AADSTS7000222": "the client secret has expired; create a new one and update client_secret_file/env",
    "AADSTS700016": "no application with client_id {client_id} in tenant {tenant_id}; check client_id and tenant_id",
    "AADSTS90002": "tenant {tenant_id} does not exist; check tenant_id and authority_host",
    "AADSTS900023": "tenant_id {tenant_id} is not a valid tenant identifier; check tenant_id",
    "AADSTS700027": "the certificate is not registered on the app (or the key does not match it); check certificate_file",
    "AADSTS700024": "the client assertion is outside its validity window; check the system clock",
    "AADSTS7000112": "the application is disabled in the tenant; ask an administrator to enable it",
    "AADSTS500011": "the resource {graph_url} is not known in the tenant; check graph_url",
    "AADSTS1002012": "the scope {scope} is invalid; check graph_url",
    "AADSTS70011": "the scope {scope} is invalid; check graph_url",
}
_AADSTS = re.compile(r"AADSTS\d+")


class TokenSource:
    """Hands out a Graph access token for one source, asking msal (and so the token endpoint) only when needed."""

    def __init__(self, source: str, settings: Settings, session: requests.Session) -> None:
        self._source = source
        self._settings = settings
        self._session = session
        self._app: msal.ConfidentialClientApplication | None = None

    def token(self) -> str:
        """A valid access token, from msal's cache or a fresh client-credentials request."""
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[self._settings.scope])
        except requests.RequestException as error:
            raise ConnectorError(self._unreachable(error)) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if token:
            remember(str(token))
            return str(token)
        self._app = None  # the next read builds a new app, so a rotated secret or certificate file is read again
        raise ConnectorError(self._refusal(result if isinstance(result, dict) else {}))

    def forget(self, token: str) -> None:
        """Drop a token Graph rejected (revoked, or expired before msal expected) so the next call gets a new one."""
        if self._app is None:
            return
        cache = self._app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            if item.get("secret") == token:
                cache.remove_at(item)

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is not None:
            return self._app
        settings = self._settings
        try:
            self._app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=self._credential(),
                authority=settings.authority,
                http_client=self._session,
                instance_discovery=False,
                timeout=(settings.connect_timeout, settings.read_timeout),
            )
        except requests.RequestException as error:
            raise ConnectorError(self._unreachable(error)) from None
        except ValueError as error:
            raise ConnectorError(self._discovery_failed(error)) from None
        return self._app

    def _credential(self) -> str | dict[str, Any]:
        settings = self._settings
        secret = read_secret(settings, "client_secret", self._source)
        if secret is not None:
            return secret
        assert settings.certificate_file is not None  # Settings guarantees exactly one credential
        password = read_secret(settings, "certificate_password", self._source)
        path = Path(settings.certificate_file)
        if path.suffix.lower() in (".pfx", ".p12"):
            if not path.is_file():
                raise ConnectorError(f"source {self._source}: certificate_file {path} does not exist; check the path")
            credential: dict[str, Any] = {"private_key_pfx_path": str(path)}
        else:
            pem = self._read(path, "certificate_file")
            key = self._read(Path(settings.private_key_file), "private_key_file") if settings.private_key_file else pem
            if "PRIVATE KEY-----" not in key:
                raise ConnectorError(
                    f"source {self._source}: no private key in {'private_key_file' if settings.private_key_file else 'certificate_file'}; "
                    "give a PEM with the key, or set private_key_file"
                )
            credential = {"private_key": key}
            if settings.certificate_thumbprint:
                credential["thumbprint"] = settings.certificate_thumbprint
            elif "BEGIN CERTIFICATE-----" in pem:
                credential["public_certificate"] = pem
            else:
                raise ConnectorError(
                    f"source {self._source}: certificate_file holds no certificate; add it or set certificate_thumbprint"
                )
        if password:
            credential["passphrase"] = password
        return credential

    def _read(self, path: Path, key: str) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not a PEM text file"
            raise ConnectorError(
                f"source {self._source}: cannot read {key} {path} ({reason}); check the path"
            ) from None

    def _advice(self, code: str) -> str | None:
        advice = AADSTS_ADVICE.get(code)
        if advice is None:
            return None
        settings = self._settings
        return advice.format(
            client_id=settings.client_id,
            tenant_id=settings.tenant_id,
            graph_url=settings.graph_origin,
            scope=settings.scope,
        )

    def _refusal(self, result: dict[str, Any]) -> str:
        where = f"source {self._source}: token request to {self._settings.authority} refused"
        codes = _AADSTS.findall(str(result.get("error_description", "")))
        codes += [f"AADSTS{code}" for code in result.get("error_codes", []) or []]
        for code in codes:
            advice = self._advice(code)
            if advice:
                return f"{where} ({code}); {advice}"
        error = str(result.get("error") or "no access token in the answer")
        code = f", {codes[0]}" if codes else ""
        return f"{where} ({error}{code}); check tenant_id, client_id and the credential, then the app's status in Entra"

    def _discovery_failed(self, error: ValueError) -> str:
        text = f"{error} {error.__context__ or ''}"
        for code in _AADSTS.findall(text):
            advice = self._advice(code)
            if advice:
                return f"source {self._source}: OpenID configuration of {self._settings.authority} refused ({code}); {advice}"
        return (
            f"source {self._source}: cannot read the OpenID configuration of {self._settings.authority}; "
            "check authority_host and tenant_id"
        )

    def _unreachable(self, error: requests.RequestException) -> str:
        reason = (
            "TLS certificate not trusted; set ca_file"
            if isinstance(error, requests.exceptions.SSLError)
            else type(error).__name__
        )
        return (
            f"source {self._source}: cannot reach {self._settings.authority_host} for a token ({reason}); "
            "check authority_host, the network and proxies"
        )
