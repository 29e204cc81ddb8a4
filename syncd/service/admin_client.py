"""The client side of the admin API, for ``syncd sync SOURCE`` against a running service (syncd/service/http_apps.py).

``POST /admin/v1/sources/<name>/sync`` runs the source now in the service (taking the same database lease as the
scheduler, so it never overlaps a scheduled run on any replica) and answers with the run's outcome.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from syncd.config import Config


class ServiceError(Exception):
    """The running service could not be reached or refused the request; the message says what to do."""


def service_url(config: Config) -> str:
    """Where the running service answers: ``server.public_url``, else ``http://`` + ``server.listen``."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    host, _, port = config.server.listen.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def admin_token() -> str | None:
    """The admin token from ``SYNCD_ADMIN_TOKEN_FILE`` (preferred) or ``SYNCD_ADMIN_TOKEN``."""
    path = os.environ.get("SYNCD_ADMIN_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ServiceError(f"cannot read SYNCD_ADMIN_TOKEN_FILE {path} ({error.strerror})") from None
    return os.environ.get("SYNCD_ADMIN_TOKEN") or None


def trigger_sync(
    base_url: str, token: str, source: str, *, full: bool = False, timeout: float = 3600.0
) -> dict[str, Any]:
    """Run ``source`` now in the service at ``base_url``; return its answer (``result``, ``run_id``, ``error``...).

    A failed run still returns its answer (``result == "failed"``, ``error`` set); refusals raise ServiceError.
    """
    session = requests.Session()
    session.trust_env = False
    url = f"{base_url.rstrip('/')}/admin/v1/sources/{quote(source, safe='')}/sync"
    try:
        response = session.post(
            url,
            params={"full": "true"} if full else None,
            headers={"Authorization": f"Bearer {token}"},
            timeout=(5.0, timeout),
        )
    except requests.RequestException as error:
        raise ServiceError(
            f"source {source}: cannot reach the service at {base_url} ({type(error).__name__}); "
            "is 'syncd serve' running there? (server.public_url / server.listen)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code in (200, 502) and "result" in body:
        return dict(body)
    reason = body.get("error") or f"HTTP {response.status_code}"
    raise ServiceError(f"source {source}: the service refused the run ({reason})")
