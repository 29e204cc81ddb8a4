"""The full read: every user (all statuses), the selected groups, and each selected group's members.

- ``GET /api/v1/users?filter=status eq "STAGED" or … or status eq "DEPROVISIONED"&limit=200``: a plain list hides
  DEPROVISIONED users (Users API, "List all users"), and a reconciler that never sees them cannot tell
  "deactivated" from "deleted". ``filter`` (not ``search``) because it reads current data, not an eventually
  consistent index.
- ``GET /api/v1/groups?limit=…`` (``filter=type eq …`` when ``group_types`` is set; name globs are matched here).
- ``GET /api/v1/groups/{id}/users?limit=1000`` for each selected group, several at once (``max_concurrency``)
  while the user list, which can only be walked one next link after another, is read beside them.

Any page that cannot be read whole stops the read with a ConnectorError: a snapshot is complete or not returned.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from connectors.interface import GroupRecord, Snapshot, UserRecord
from connectors.okta.client import NotFound, OktaClient
from connectors.okta.cursor import Watermark
from connectors.okta.paging import items, pages
from connectors.okta.records import STATUS_FILTER, group_record, selected, type_filter, user_record
from connectors.okta.settings import Settings
from connectors.okta.workers import ReadWorkers
from syncd.common.errors import ConnectorError

log = logging.getLogger(__name__)


def read_snapshot(client: OktaClient, settings: Settings) -> Snapshot:
    with ReadWorkers(client, settings.max_concurrency) as workers:
        users_future = workers.submit(read_users, client, {"filter": STATUS_FILTER, "limit": settings.page_size})
        groups, groups_started = _read_groups_and_members(client, settings, workers)
        users, users_started = users_future.result()
    started = min((t for t in (users_started, groups_started) if t is not None), default=datetime.now(UTC))
    log.info(
        "okta snapshot read",
        extra={"source": client.source, "users": len(users), "groups": len(groups), "requests": client.requests_sent},
    )
    return Snapshot(users=users, groups=groups, cursor=Watermark(started).encode(), complete=True)


def read_users(client: OktaClient, params: dict[str, Any]) -> tuple[list[UserRecord], datetime | None]:
    """Every user the filter matches, and the server time of the first answer (the next read's watermark)."""
    users: list[UserRecord] = []
    started: datetime | None = None
    try:
        for page in pages(client, client.url("/api/v1/users", params), "users"):
            started = started or page.server_time
            users.extend(user_record(user) for user in page.items)
    except NotFound:
        raise wrong_url(client, "/api/v1/users") from None
    return users, started


def read_members(client: OktaClient, group_id: str, limit: int) -> list[str]:
    """The ids of a group's direct members (Groups API, "List all member users"); NotFound if the group is gone."""
    url = client.url(f"/api/v1/groups/{group_id}/users", {"limit": limit})
    return [str(user["id"]) for user in items(client, url, f"members of group {group_id}")]


def groups_url(client: OktaClient, settings: Settings, extra_filter: str | None = None) -> str:
    """The first page of groups: the Groups API ``filter`` for type and time; name globs are applied by the caller."""
    clauses = [c for c in (extra_filter, type_filter(settings.group_types)) if c]
    params: dict[str, Any] = {"limit": settings.group_page_size}
    if clauses:
        params["filter"] = " and ".join(f"({c})" for c in clauses) if len(clauses) > 1 else clauses[0]
    return client.url("/api/v1/groups", params)


def _read_groups_and_members(
    client: OktaClient, settings: Settings, workers: ReadWorkers
) -> tuple[list[GroupRecord], datetime | None]:
    started: datetime | None = None
    pending: list[tuple[dict[str, Any], Future[list[str]]]] = []
    try:
        for page in pages(client, groups_url(client, settings), "groups"):
            started = started or page.server_time
            for group in page.items:
                if selected(group, settings.group_types, settings.group_names):
                    future = workers.submit(read_members, client, str(group["id"]), settings.member_page_size)
                    pending.append((group, future))
    except NotFound:
        raise wrong_url(client, "/api/v1/groups") from None
    groups: list[GroupRecord] = []
    for group, future in pending:
        try:
            members = future.result()
        except NotFound:
            continue  # deleted between the group list and its members: it is absent now, which is the truth
        groups.append(group_record(group, members))
    return groups, started


def wrong_url(client: OktaClient, path: str) -> ConnectorError:
    return ConnectorError(
        f"source {client.source}: Okta answered 404 for {path}; check that url is the org URL "
        "(like https://acme.okta.com, without a path)"
    )
