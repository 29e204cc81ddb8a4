"""Point-in-time answers from the ledger: who was a member, with which role and teams, at a given moment.

Every ledger entry that targets a member (``member:<match key>``) carries the member's full state after the change
in ``after`` (the ledger contract in the brief, mirrored by ``syncd members list --format json``), so the state at
time T is the ``after`` of the latest such entry at or before T. After retention has pruned old entries, the
checkpoint's ``carried`` states stand in for members whose last change was pruned; moments before the pruned
horizon cannot be answered and say so.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import peewee

from syncd.admin import members
from syncd.admin.audit import MEMBER_PREFIX
from syncd.clock import iso
from syncd.store.models import LedgerEntry
from syncd.sync import ledger

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class HistoryError(Exception):
    """A moment cannot be read or answered; the message says what to give instead."""


def parse_moment(text: str, where: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time as the naive UTC datetime the store keeps.

    A time without an offset is UTC; one with an offset (``+02:00``, ``Z``) is converted. A bare date means its
    midnight UTC, or with ``end_of_day`` the following midnight, so that ``--until 2026-03-31`` includes that day.
    """
    value = text.strip()
    try:
        if _DATE.match(value):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day)
            return moment + timedelta(days=1) if end_of_day else moment
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HistoryError(
            f"{where}: {text!r} is not an ISO 8601 date or time; use e.g. 2026-11-25 or 2026-11-25T14:30:00Z"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def members_at(org_id: int, at: datetime) -> list[dict[str, Any]]:
    """Every member's state at ``at`` (naive UTC), in the shape of ``syncd members list --format json``.

    One query finds, per member target, the highest sequence number at or before ``at`` and joins back to its
    ``after``; ``sources`` is kept when the recorded state names them, else ``[]``. Members who had left
    (``deprovisioned``) are included with that status.
    """
    states: dict[str, dict[str, Any]] = {}
    anchor = _pruned_horizon(org_id)
    if anchor is not None:
        horizon = parse_moment(anchor.pruned_before, "checkpoint") if anchor.pruned_before else None
        if horizon is not None and at < horizon:
            raise HistoryError(
                f"ledger entries before {iso(horizon)} were pruned (checkpoint seq {anchor.checkpoint_seq}); "
                f"ask for a moment at or after {iso(horizon)}"
            )
        for target, carried in anchor.carried.items():
            if target.startswith(MEMBER_PREFIX) and isinstance(carried, dict) and carried.get("after"):
                states[target] = carried["after"]
    latest = (
        LedgerEntry.select(LedgerEntry.target, peewee.fn.MAX(LedgerEntry.seq).alias("seq"))
        .where(LedgerEntry.org == org_id, LedgerEntry.at <= at, LedgerEntry.target.startswith(MEMBER_PREFIX))
        .group_by(LedgerEntry.target)
    )
    query = (
        LedgerEntry.select(LedgerEntry.target, LedgerEntry.after)
        .join(latest, on=(LedgerEntry.target == latest.c.target) & (LedgerEntry.seq == latest.c.seq))
        .where(LedgerEntry.org == org_id)
        .tuples()
    )
    for target, after in query.iterator():
        if after is not None:
            states[target] = json.loads(after)
        else:
            states.pop(target, None)
    ordered = members.in_order(_member(target, state) for target, state in states.items())
    for member in ordered:
        del member["match_key"]  # the order's tiebreak, which the answer leaves out as the CLI does
    return ordered


def _pruned_horizon(org_id: int) -> ledger.Anchor | None:
    """The checkpoint of the most recent prune, if the chain has been pruned."""
    anchors = ledger.checkpoints(org_id)
    return max(anchors, key=lambda a: a.through_seq) if anchors else None


def _member(target: str, state: dict[str, Any]) -> dict[str, Any]:
    """A recorded member state as the members document (:func:`syncd.admin.members.document`). ``sources`` are those
    the state names: ledger entries do not record which sources asserted a member, so usually none."""
    key = target.removeprefix(MEMBER_PREFIX)
    return members.document(
        match_key=key,
        email=state.get("email"),
        user_name=state.get("user_name") or key,
        display_name=state.get("display_name"),
        status=state.get("status"),
        role=state.get("role"),
        teams=state.get("teams") or [],
        sources=state.get("sources") or [],
        pinned=state.get("pinned", False),
        manager=state.get("manager"),
    )
