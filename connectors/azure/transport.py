"""The HTTP session for Entra: TLS trust decided by the config alone, and a timeout on every request.

``trust_env=False`` keeps ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` and proxy variables of the service's environment
from overriding the config (docs/architecture.md, "Peers": msal silently ignores ``verify=`` otherwise). ``ca_file`` is
trusted in addition to the system store (docs/architecture.md, "Contracts": an extra CA bundle to trust);
certificate checks are never switched off.
"""

from __future__ import annotations

import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connectors.azure.settings import Settings

USER_AGENT = "syncd-entra"


class _TrustAdapter(HTTPAdapter):
    """An adapter whose TLS context trusts the system store plus ``ca_file``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Leave ``ca_certs`` unset so the context above (system store + ca_file) decides alone."""
        super().cert_verify(conn, url, verify, cert)
        conn.ca_certs = None
        conn.ca_cert_dir = None


class _Session(requests.Session):
    """A session that applies (connect, read) timeouts to every request, msal's included."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def new_session(settings: Settings) -> requests.Session:
    """A session for one source: no environment overrides, system CAs plus ``ca_file``, bounded waits."""
    session = _Session((settings.connect_timeout, settings.read_timeout))
    session.trust_env = False
    session.verify = True
    session.headers["User-Agent"] = USER_AGENT
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    session.mount("https://", _TrustAdapter(context))
    return session
