"""Read an Entra ID tenant: a full snapshot first, then deltas from the stored deltaLinks.

The cursor is the pair of deltaLinks (users, groups) with a fingerprint of what was selected. It is returned with
the changes it produced and committed with them by the pipeline, so a run that fails anywhere leaves the old cursor
and the next run reads the same changes again (Graph replays are harmless: the records are idempotent). When Graph
asks for a synchronization reset (410 Gone, ``syncStateNotFound``), or the selection changed since the cursor was
written, the read starts over and returns a complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
from typing import Any

from connectors.azure.delta import DeltaReader, ResyncRequired
from connectors.azure.records import GroupFold, UserFold, delta, snapshot
from connectors.azure.settings import Settings
from connectors.azure.throttle import Throttle
from connectors.azure.token import TokenSource
from connectors.azure.transport import new_session
from connectors.interface import ReadResult
from syncd.common.errors import ConnectorError

CURSOR_VERSION = 1
log = logging.getLogger("syncd.connectors.azure")


class Connector:
    """The ``azure`` connector: ``read(None)`` is a full snapshot, ``read(cursor)`` a delta (or a snapshot after a
    synchronization reset)."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        try:
            self.session = new_session(settings)
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ConnectorError(
                f"source {name}: cannot load ca_file {settings.ca_file} ({reason}); check the path"
            ) from None
        self.throttle = Throttle(settings.max_throttle_wait)
        self.tokens = TokenSource(name, settings, self.session)
        self.reader = DeltaReader(name, settings, self.session, self.tokens, self.throttle)

    @property
    def requests(self) -> int:
        """Graph requests made by the last read (token requests are msal's and not counted)."""
        return self.reader.requests

    def read(self, cursor: str | None) -> ReadResult:
        self.throttle.start_read()
        self.reader.requests = 0
        links = self._links(cursor)
        if links is None:
            if cursor is not None:
                log.warning("source=%s event=full_read reason=%s", self.name, "cursor_unusable_or_selection_changed")
            result = self._full()
        else:
            try:
                result = self._incremental(*links)
            except ResyncRequired as reset:
                log.warning(
                    "source=%s event=full_read reason=synchronization_reset graph_status=%r", self.name, str(reset)
                )
                result = self._full()
        log.info(
            "source=%s event=read kind=%s users=%d groups=%d requests=%d throttled_wait=%.1f paced=%.1f",
            self.name,
            type(result).__name__.lower(),
            len(result.users),
            len(result.groups),
            self.reader.requests,
            self.throttle.waited,
            self.throttle.paced,
        )
        return result

    def _full(self) -> ReadResult:
        settings = self.settings
        users = UserFold()
        groups = GroupFold() if settings.read_groups else None
        try:
            users_link = self.reader.read_round(
                "users", self.reader.initial_url("users", settings.user_attributes()), users.add
            )
            groups_link = None
            if groups is not None:
                url = self.reader.initial_url("groups", settings.group_attributes(), settings.group_ids)
                groups_link = self.reader.read_round("groups", url, groups.add)
        except ResyncRequired as error:
            raise ConnectorError(
                f"source {self.name}: Graph asked for a synchronization reset ({error}) during a full read; "
                "the next run starts over"
            ) from None
        return snapshot(users, groups, self._cursor(users_link, groups_link))

    def _incremental(self, users_link: str, groups_link: str | None) -> ReadResult:
        users = UserFold()
        groups = GroupFold() if groups_link is not None else None
        users_link = self.reader.read_round("users", users_link, users.add)
        if groups is not None and groups_link is not None:
            groups_link = self.reader.read_round("groups", groups_link, groups.add)
        return delta(users, groups, self._cursor(users_link, groups_link))

    def _fingerprint(self) -> str:
        """What a deltaLink silently carries: the selection. A changed selection needs a new full round."""
        settings = self.settings
        shape = [
            settings.graph_origin,
            settings.user_attributes(),
            settings.read_groups and settings.group_attributes(),
            settings.group_ids,
        ]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]

    def _cursor(self, users_link: str, groups_link: str | None) -> str:
        state = {"v": CURSOR_VERSION, "select": self._fingerprint(), "users": users_link, "groups": groups_link}
        return json.dumps(state, separators=(",", ":"))

    def _links(self, cursor: str | None) -> tuple[str, str | None] | None:
        """The deltaLinks of a cursor, or None when the read must be a full one."""
        if cursor is None:
            return None
        try:
            state: Any = json.loads(cursor)
        except ValueError:
            return None
        if (
            not isinstance(state, dict)
            or state.get("v") != CURSOR_VERSION
            or state.get("select") != self._fingerprint()
        ):
            return None
        users_link, groups_link = state.get("users"), state.get("groups")
        if not isinstance(users_link, str) or (self.settings.read_groups and not isinstance(groups_link, str)):
            return None
        return (
            self.reader.check_link(users_link, "a stored deltaLink"),
            self.reader.check_link(groups_link, "a stored deltaLink") if self.settings.read_groups else None,
        )
