"""The one door from a SCIM write to the reconciler (docs/architecture.md, "Layers").

Every SCIM write that changes users, groups or memberships reports it here inside its write transaction, and the
members behind the identities whose data or memberships changed are reconciled in the same commit
(docs/architecture.md invariant 2): which identities those are is decided here, from the rows before and after.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

from scim.statements import UserRow
from scim.storage import Rows
from syncd.config import Config
from syncd.logs import log_event
from syncd.sync import pipeline

log = logging.getLogger("syncd.scim")


def touched(
    config: Config,
    org_id: int,
    match_keys: Iterable[str | None],
    actor: str,
    changed: Collection[str] | None = None,
) -> None:
    """Reconcile the members behind these match keys with the org's rules in ``config`` (the live config of the
    serving process, passed per request) and the SCIM guard; identities without a match key join no one (they are
    reported, see docs/architecture.md, "Unmatched identities"). ``changed``: the identity columns a write of one
    user changed (see :func:`syncd.sync.pipeline.reconcile_touched`)."""
    keys = sorted({key for key in match_keys if key})
    if keys:
        pipeline.reconcile_touched(config, org_id, keys, actor=actor, scim=True, changed=changed)


def _touched(
    config: Config, rows: Rows, match_keys: Iterable[str | None], changed: Collection[str] | None = None
) -> None:
    touched(config, rows.tenant.org_id, match_keys, rows.tenant.actor, changed)


def user_created(config: Config, rows: Rows, key: str, columns: dict[str, Any]) -> None:
    if columns["match_key"] is None:
        _unmatched(rows, key, columns)
    _touched(config, rows, [columns["match_key"]])


def user_updated(config: Config, rows: Rows, before: UserRow, old: dict[str, Any], columns: dict[str, Any]) -> None:
    """A user written over ``before`` (whose columns were ``old``): its old and new match keys, and when its email
    changed the people it manages, who show the manager's email. Only the columns that changed are planned from: a
    write that changes none the plan reads (a title without attribute rules, a phone number) reconciles no one."""
    if columns["match_key"] is None and before.match_key is not None:
        _unmatched(rows, before.key, columns)
    changed = {name for name, value in columns.items() if old.get(name) != value}
    keys = [before.match_key, columns["match_key"]]
    if "email" in changed:
        keys += rows.reports_of(before.key)
    _touched(config, rows, keys, changed)


def user_deleted(config: Config, rows: Rows, user: UserRow) -> None:
    _touched(config, rows, [user.match_key])


def members_changed(config: Config, rows: Rows, member_keys: Iterable[str]) -> None:
    """Members joined, left or were restated in a group, or the group was renamed or deleted."""
    _touched(config, rows, rows.match_keys(member_keys))


def _unmatched(rows: Rows, key: str, columns: dict[str, Any]) -> None:
    """Log, once (when it becomes unmatched), a user stored without the org's match key: it joins no member.
    It is also a note of ``syncd plan``, a metric and a line of ``syncd sources show``."""
    log_event(
        log,
        "identity.unmatched",
        logging.WARNING,
        org_id=rows.tenant.org_id,
        source_id=rows.tenant.source_id,
        id=key,
        user_name=columns["user_name"],
        match_on=rows.tenant.match_on,
        effect="joins no member until it has one",
    )
