"""The cursor an Okta source stores between runs: watermarks in Okta's clock, and the System Log position.

It is JSON: ``{"v": 1, "since": "2026-11-25T10:00:00.000Z", "log_next": "https://…/api/v1/logs?…"}``.
``since`` is the server time (``Date`` header) of the first answer of the previous read: everything changed after
it has a later ``lastUpdated`` / ``lastMembershipUpdated``. The next read asks for ``gt since - overlap`` so that
writes Okta had not yet made visible (its list filters are eventually consistent by about a second) are not lost.
``log_next`` is the last ``next`` link of the System Log poll, followed as Okta gave it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

VERSION = 1


@dataclass(frozen=True)
class Watermark:
    since: datetime
    log_next: str | None = None

    def encode(self) -> str:
        return json.dumps(
            {"v": VERSION, "since": okta_time(self.since), "log_next": self.log_next},
            sort_keys=True,
            separators=(",", ":"),
        )

    def query_since(self, overlap_seconds: int) -> str:
        return okta_time(self.since - timedelta(seconds=overlap_seconds))


def decode(cursor: str) -> Watermark | None:
    """The watermark in ``cursor``, or None when it is not one of ours (then the connector reads a full snapshot)."""
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            return None
        since = datetime.strptime(data["since"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        log_next = data.get("log_next")
        return Watermark(since, log_next if isinstance(log_next, str) else None)
    except (ValueError, KeyError, TypeError):
        return None


def okta_time(moment: datetime) -> str:
    """Okta's timestamp form in filters: ``2013-06-01T00:00:00.000Z`` (Users API, "filter")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
