"""Okta connector: users, groups and memberships from the Okta management API (docs/architecture.md, "Data flow").

``read(None)`` reads a full :class:`~connectors.interface.Snapshot` (:mod:`connectors.okta.snapshot`);
``read(cursor)`` reads a :class:`~connectors.interface.Delta` since the cursor's watermark
(:mod:`connectors.okta.delta`), or a full snapshot again when the cursor is not one this connector wrote.
Paging (:mod:`~connectors.okta.paging`), rate limits (:mod:`~connectors.okta.ratelimit`) and authentication
(:mod:`~connectors.okta.auth`) live in their own modules; statuses map to active/inactive in
:mod:`~connectors.okta.records`.
"""

from __future__ import annotations

import logging

from connectors.interface import ReadResult
from connectors.okta.client import OktaClient
from connectors.okta.cursor import decode
from connectors.okta.delta import read_delta
from connectors.okta.settings import Settings
from connectors.okta.snapshot import read_snapshot

__all__ = ["Connector", "Settings"]

log = logging.getLogger(__name__)


class Connector:
    """Reads one Okta org for the source ``name``; never touches the store (docs/architecture.md, "Layers")."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.requests_sent = 0

    def read(self, cursor: str | None) -> ReadResult:
        mark = decode(cursor) if cursor else None
        if cursor and mark is None:
            log.warning("okta cursor not understood; reading a full snapshot", extra={"source": self.name})
        with OktaClient(self.name, self.settings) as client:
            try:
                if mark is None:
                    return read_snapshot(client, self.settings)
                return read_delta(client, self.settings, mark)
            finally:
                self.requests_sent = client.requests_sent
