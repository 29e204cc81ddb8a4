"""The incremental read: what changed since the watermark, and the removals Okta states explicitly.

- Users: ``filter=lastUpdated gt "<since − overlap>" and (<every status>)`` — status changes (deactivation,
  suspension) move ``lastUpdated``, so a deactivated user arrives as an inactive upsert.
- Groups: ``filter=lastUpdated gt "…" or lastMembershipUpdated gt "…"`` (Groups API, "List all groups"). Without
  the System Log, a group whose members changed is re-read whole, and its full member list replaces the staged one.
  A group renamed out of the ``group_names`` globs is an explicit removal: it left this source's scope.
- System Log (``system_log = true``): ``GET /api/v1/logs`` polled with the ``next`` link of the previous run
  (System Log API, "Polling requests": the next link is always present, an empty or short page means caught up).
  ``user.lifecycle.delete.completed`` and ``group.lifecycle.delete`` become removals; ``group.user_membership.add``
  / ``.remove`` become member additions and removals, so a changed group costs one event instead of a re-read of
  all its members.

Deleted users and groups are otherwise invisible to watermarks; the pipeline's periodic full snapshot
(``full_snapshot_every``) catches them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.interface import Delta, GroupRecord
from connectors.okta.client import NotFound, OktaClient
from connectors.okta.cursor import Watermark
from connectors.okta.paging import limit_of, pages
from connectors.okta.records import STATUS_FILTER, group_record, selected
from connectors.okta.settings import Settings
from connectors.okta.snapshot import groups_url, read_members, read_users, wrong_url
from connectors.okta.workers import ReadWorkers

LOG_PAGE_SIZE = 1000
USER_DELETED = "user.lifecycle.delete.completed"
GROUP_DELETED = "group.lifecycle.delete"
MEMBER_ADDED = "group.user_membership.add"
MEMBER_REMOVED = "group.user_membership.remove"
LOG_FILTER = " or ".join(f'eventType eq "{t}"' for t in (USER_DELETED, GROUP_DELETED, MEMBER_ADDED, MEMBER_REMOVED))


def read_delta(client: OktaClient, settings: Settings, mark: Watermark) -> Delta:
    since = mark.query_since(settings.overlap_seconds)
    user_filter = f'lastUpdated gt "{since}" and ({STATUS_FILTER})'
    group_filter = f'lastUpdated gt "{since}" or lastMembershipUpdated gt "{since}"'
    with ReadWorkers(client, 2) as workers:
        users_future = workers.submit(read_users, client, {"filter": user_filter, "limit": settings.page_size})
        try:
            group_pages = list(pages(client, groups_url(client, settings, group_filter), "changed groups"))
        except NotFound:
            raise wrong_url(client, "/api/v1/groups") from None
        users, users_started = users_future.result()
    starts = [t for t in (users_started, group_pages[0].server_time if group_pages else None) if t is not None]
    delta = Delta(users=users)
    changed = [group for page in group_pages for group in page.items]
    in_scope = {str(g["id"]): g for g in changed if selected(g, settings.group_types, settings.group_names)}
    if settings.group_names:
        delta.removed_group_keys.extend(str(g["id"]) for g in changed if str(g["id"]) not in in_scope)
    log_next = mark.log_next
    if settings.system_log:
        events, log_next = poll_log(client, settings, mark)
        _apply_events(client, settings, delta, events, in_scope)
        delta.groups.extend(_profile_changes(in_scope.values(), since))
    else:
        delta.groups.extend(_reread_members(client, settings, in_scope.values()))
    started = min(starts, default=datetime.now(UTC))
    delta.cursor = Watermark(started, log_next).encode()
    return delta


def poll_log(client: OktaClient, settings: Settings, mark: Watermark) -> tuple[list[dict[str, Any]], str]:
    """Events since the last poll, oldest first, and the next link to resume from."""
    if mark.log_next and client.same_origin(mark.log_next):
        url = mark.log_next
    else:
        params = {
            "since": mark.query_since(settings.overlap_seconds),
            "sortOrder": "ASCENDING",
            "limit": LOG_PAGE_SIZE,
            "filter": LOG_FILTER,
        }
        url = client.url("/api/v1/logs", params)
    events: list[dict[str, Any]] = []
    number = 0
    while True:
        number += 1
        try:
            page = client.get(url, f"System Log events (page {number})")
        except NotFound:
            raise wrong_url(client, "/api/v1/logs") from None
        events.extend(page.items)
        if page.next_url is None or not client.same_origin(page.next_url):
            return events, url  # not a polling answer: resume from the same request next time
        if len(page.items) < (limit_of(url) or LOG_PAGE_SIZE):
            return events, page.next_url  # caught up; the next link is where new events will appear
        url = page.next_url


def _apply_events(
    client: OktaClient, settings: Settings, delta: Delta, events: list[dict[str, Any]], known: dict[str, Any]
) -> None:
    """Fold events into removals and membership changes; the last event about a (group, user) pair wins."""
    membership: dict[tuple[str, str], bool] = {}
    deleted_users: set[str] = set()
    deleted_groups: set[str] = set()
    for event in events:
        if (event.get("outcome") or {}).get("result", "SUCCESS") != "SUCCESS":
            continue
        kind = event.get("eventType")
        targets = [t for t in event.get("target") or [] if isinstance(t, dict)]
        user = next((str(t["id"]) for t in targets if t.get("type") == "User" and t.get("id")), None)
        group = next((str(t["id"]) for t in targets if t.get("type") == "UserGroup" and t.get("id")), None)
        if kind == USER_DELETED and user:
            deleted_users.add(user)
        elif kind == GROUP_DELETED and group:
            deleted_groups.add(group)
        elif kind in (MEMBER_ADDED, MEMBER_REMOVED) and user and group:
            membership[(group, user)] = kind == MEMBER_ADDED
    scope = _group_scope(client, settings, {g for g, _ in membership} - deleted_groups, known)
    for (group, user), added in membership.items():
        if not scope.get(group) or user in deleted_users:
            continue
        target = delta.members_added if added else delta.members_removed
        target.setdefault(group, set()).add(user)
    delta.users = [u for u in delta.users if u.key not in deleted_users]
    delta.removed_user_keys.extend(sorted(deleted_users))
    delta.removed_group_keys.extend(sorted(deleted_groups - set(delta.removed_group_keys)))


def _group_scope(client: OktaClient, settings: Settings, ids: set[str], known: dict[str, Any]) -> dict[str, bool]:
    """Whether each group is read by this source; groups not in the changed list are fetched one by one."""
    scope = {gid: True for gid in ids if gid in known}
    for gid in sorted(ids - set(known)):
        try:
            group = client.get_object(client.url(f"/api/v1/groups/{gid}"), f"group {gid}")
        except NotFound:
            scope[gid] = False  # deleted since: its removal event or the next full snapshot says so
            continue
        scope[gid] = selected(group, settings.group_types, settings.group_names)
    return scope


def _profile_changes(groups: Any, since: str) -> list[GroupRecord]:
    """Groups whose own attributes changed; their members are left as staged (``member_keys=None``)."""
    return [group_record(g, None) for g in groups if str(g.get("lastUpdated") or "") > since]


def _reread_members(client: OktaClient, settings: Settings, groups: Any) -> list[GroupRecord]:
    groups = list(groups)
    if not groups:
        return []
    records: list[GroupRecord] = []
    with ReadWorkers(client, settings.max_concurrency) as workers:
        futures = [(g, workers.submit(read_members, client, str(g["id"]), settings.member_page_size)) for g in groups]
        for group, future in futures:
            try:
                records.append(group_record(group, future.result()))
            except NotFound:
                continue  # deleted since it was listed; the next full snapshot removes it
    return records
