"""One round of a Graph delta query: follow ``@odata.nextLink`` to the ``@odata.deltaLink``, page by page.

"Use delta query to track changes in Microsoft Graph data": a round starts at the initial query (or at the last
round's deltaLink), every ``@odata.nextLink`` is requested exactly as given (its opaque skiptoken carries ``$select``),
and the round ends with the page that holds the ``@odata.deltaLink`` — never both links on one page. A 410 Gone
("Synchronization reset") or an expired token (``syncStateNotFound``) means the tenant must be read again in full;
the 410's ``Location`` names the initial query again, which the connector rebuilds from its settings so that
``$select`` and the group filter stay as configured.

The bearer token is sent only to ``graph_url``: a link that points anywhere else stops the read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import requests

from connectors.azure.settings import Settings
from connectors.azure.throttle import Throttle
from connectors.azure.token import TokenSource
from syncd.common.errors import ConnectorError

#: Graph error codes that mean "this delta token is no longer usable; synchronize again from the start".
RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
#: The application permission each collection needs (user: delta, group: delta, "Permissions").
PERMISSIONS = {"users": "User.Read.All", "groups": "GroupMember.Read.All"}
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_THROTTLED_STATUSES = frozenset({429, 503})

Items = list[dict[str, Any]]


class ResyncRequired(Exception):
    """Graph no longer knows the delta token: the next read must be a full synchronization."""


class DeltaReader:
    """Reads delta rounds for one source, counting the Graph requests it makes."""

    def __init__(
        self, source: str, settings: Settings, session: requests.Session, tokens: TokenSource, throttle: Throttle
    ) -> None:
        self._source = source
        self._settings = settings
        self._session = session
        self._tokens = tokens
        self._throttle = throttle
        self.requests = 0

    def initial_url(self, collection: str, attributes: tuple[str, ...], ids: tuple[str, ...] = ()) -> str:
        """The first request of a full round; query options go only here (later links carry them)."""
        url = f"{self._settings.graph_origin}/v1.0/{collection}/delta?$select={','.join(attributes)}"
        if ids:
            url += "&$filter=" + " or ".join(f"id eq '{i}'" for i in ids)
        return url

    def check_link(self, link: str, what: str) -> str:
        """A link may only lead back to ``graph_url``: the bearer token must never reach another host."""
        if not isinstance(link, str) or not link.startswith(self._settings.graph_origin + "/"):
            raise ConnectorError(
                f"source {self._source}: Graph gave {what} outside {self._settings.graph_origin} ({str(link)[:80]!r}); "
                "refusing to send the token there; check graph_url"
            )
        return link

    def read_round(self, collection: str, url: str, consume: Callable[[Items], None]) -> str:
        """Request every page of the round starting at ``url``, hand each page's items to ``consume``, and return
        the round's deltaLink."""
        page = 0
        while True:
            page += 1
            where = f"page {page} of /{collection}/delta"
            body = self._get(collection, self.check_link(url, "a link"), where)
            items = body.get("value")
            if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) for i in items
            ):
                raise self._malformed(where, "'value' is not a list of objects with an id")
            next_link = body.get("@odata.nextLink")
            delta_link = body.get("@odata.deltaLink")
            if (next_link is None) == (delta_link is None):
                raise self._malformed(where, "it needs exactly one of @odata.nextLink and @odata.deltaLink")
            consume(items)
            if delta_link is not None:
                return self.check_link(delta_link, "an @odata.deltaLink")
            url = next_link

    def _get(self, collection: str, url: str, where: str) -> dict[str, Any]:
        """One page, with Retry-After honoured, one new token after a 401, and bounded retries of 5xx and cuts."""
        attempt = 0
        renewed = False
        while True:
            self._throttle.before_request()
            token = self._tokens.token()
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "x-ms-throttle-priority": "low",
                "Prefer": f"odata.maxpagesize={self._settings.page_size}",
                "client-request-id": str(uuid.uuid4()),
                "return-client-request-id": "true",
            }
            try:
                response = self._session.get(url, headers=headers, allow_redirects=False)
            except requests.exceptions.SSLError:
                raise ConnectorError(
                    f"source {self._source}: TLS certificate of {self._settings.graph_origin} is not trusted; "
                    "set ca_file to the CA that issued it"
                ) from None
            except requests.RequestException as error:  # refused, reset, timed out, or cut mid-answer
                self.requests += 1
                attempt += 1
                delay = self._throttle.retry_after({}, attempt)
                if attempt > self._settings.max_retries or not self._throttle.can_wait(delay):
                    raise ConnectorError(
                        f"source {self._source}: {where} failed ({type(error).__name__}) after {attempt} attempts; "
                        f"nothing was applied; check the network path to {self._settings.graph_origin}"
                    ) from None
                self._throttle.wait(delay)
                continue
            self.requests += 1
            status = response.status_code
            if status == 200:
                self._throttle.observe(response.headers)
                return self._json(response, where)
            code, request_id = _error_of(response)
            if status == 410 or code in RESYNC_CODES:
                raise ResyncRequired(f"{status} {code or 'Gone'}")
            if status == 401 and not renewed:
                self._tokens.forget(token)
                renewed = True
                continue
            if status in _RETRIED_STATUSES:
                attempt += 1
                delay = self._throttle.retry_after(response.headers, attempt)
                throttled = status in _THROTTLED_STATUSES
                if (throttled or attempt <= self._settings.max_retries) and self._throttle.can_wait(delay):
                    self._throttle.wait(delay)
                    continue
                if throttled:
                    raise ConnectorError(
                        f"source {self._source}: Graph kept throttling {where} (HTTP {status}) past max_throttle_wait "
                        f"{self._settings.max_throttle_wait:g}s; nothing was applied, the next run resumes{request_id}"
                    )
                raise ConnectorError(
                    f"source {self._source}: Graph failed {where} (HTTP {status} {code or ''}".rstrip()
                    + f") {attempt} times; nothing was applied, the next run retries{request_id}"
                )
            if status == 403:
                raise ConnectorError(
                    f"source {self._source}: Graph refused /{collection}/delta (403 {code or 'Forbidden'}); grant the "
                    f"app the application permission {PERMISSIONS[collection]} with admin consent{request_id}"
                )
            if status == 401:
                raise ConnectorError(
                    f"source {self._source}: Graph rejected a fresh token (401 {code or 'Unauthorized'}); check that "
                    f"graph_url matches the cloud of authority_host{request_id}"
                )
            raise ConnectorError(
                f"source {self._source}: Graph answered {where} with HTTP {status} {code or ''}".rstrip()
                + f"; nothing was applied{request_id}"
            )

    def _json(self, response: requests.Response, where: str) -> dict[str, Any]:
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise self._malformed(where, "not valid JSON") from None
        if not isinstance(body, dict):
            raise self._malformed(where, "not a JSON object")
        return body

    def _malformed(self, where: str, what: str) -> ConnectorError:
        return ConnectorError(
            f"source {self._source}: Graph sent a malformed {where} ({what}); nothing was applied, the next run "
            "retries; if it persists, check for a proxy rewriting Graph answers"
        )


def _error_of(response: requests.Response) -> tuple[str | None, str]:
    """The Graph error code of an answer, and a ``; request-id X`` suffix for support cases ("Microsoft Graph
    error responses and resource types")."""
    code = None
    request_id = response.headers.get("request-id")
    try:
        error = json.loads(response.content).get("error", {})
        code = error.get("code") if isinstance(error.get("code"), str) else None
        inner = error.get("innerError") or {}
        request_id = request_id or inner.get("request-id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return code, f"; request-id {request_id}" if isinstance(request_id, str) and request_id else ""
