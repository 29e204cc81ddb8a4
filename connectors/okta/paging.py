"""Okta pagination: follow ``Link: <…>; rel="next"`` and nothing else.

Okta's list endpoints return a page and, when more follow, a ``Link`` header with ``rel="next"`` whose URL carries
an opaque ``after`` cursor (developer.okta.com, "Pagination" and "Link header"). We never build or decode a cursor;
the only thing we change in a next link is ``limit``, when a 5xx asked for a smaller page (Okta: "If you receive an
HTTP 500 status code, you likely exceeded the request timeout. Retry your request with a smaller limit").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncd.common.errors import ConnectorError

if TYPE_CHECKING:
    from connectors.okta.client import OktaClient


@dataclass
class Page:
    """One page of a list endpoint: its items, the next link if any, and the server's clock when it answered."""

    items: list[dict[str, Any]]
    next_url: str | None
    server_time: datetime | None


def with_limit(url: str, limit: int) -> str:
    """``url`` with its ``limit`` query parameter set to ``limit``; every other parameter kept as it was."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "limit"]
    query.append(("limit", str(limit)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def limit_of(url: str) -> int | None:
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "limit" and value.isdigit():
            return int(value)
    return None


def pages(client: OktaClient, first_url: str, what: str) -> Iterator[Page]:
    """Every page of a list, following next links until there is none.

    A next link to another origin than the org's is refused (it would carry our credentials elsewhere), and a
    next link equal to the page just read is a loop, not progress.
    """
    url: str | None = first_url
    wanted = limit_of(first_url)
    number = 0
    while url:
        number += 1
        page = client.get(url, f"{what} (page {number})")
        yield page
        next_url = page.next_url
        if next_url is None:
            return
        if not client.same_origin(next_url):
            raise ConnectorError(
                f"source {client.source}: Okta's next link for {what} points at another host "
                f"({urlsplit(next_url).netloc}); refusing to send credentials there — check that url is the org URL"
            )
        if next_url == url:
            raise ConnectorError(
                f"source {client.source}: Okta returned the same next link twice while reading {what}; "
                "stopping rather than looping — retry later or report it to Okta support"
            )
        if wanted is not None and (limit_of(next_url) or wanted) < wanted:
            next_url = with_limit(next_url, wanted)  # back to the full page size after a shrunk retry
        url = next_url


def items(client: OktaClient, first_url: str, what: str) -> Iterator[dict[str, Any]]:
    for page in pages(client, first_url, what):
        yield from page.items
