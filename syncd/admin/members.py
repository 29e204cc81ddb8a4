"""Members as the org holds them: listing (for ``syncd members``) and an admin's role override, pinned or not.

A pinned role beats every rule until it is unpinned (docs/architecture.md, "The model"); setting and pinning are
separate ledger entries (``member.role``, ``member.pin``) applied through the same path as a plan, outbox events
included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from syncd.admin import audit
from syncd.clock import iso_seconds
from syncd.config import Config
from syncd.domain.matching import fold_key
from syncd.domain.reconcile import Action
from syncd.store import dialect
from syncd.store.models import Identity, Member, Organization, Source, Team, TeamMember
from syncd.store.sql import batches
from syncd.store.tx import write_transaction
from syncd.sync.apply import apply_plan
from syncd.sync.gather import gather
from syncd.sync.pipeline import lock_org, org_rules, reconcile_touched


class MemberError(Exception):
    """A member operation was refused; the message names the member and what to do."""


def listing(org: Organization, match_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """Members with their teams and the sources asserting them, in a few set-based queries (:func:`in_order`)."""
    query = Member.select().where(Member.org == org.id)
    if match_keys is not None:
        query = query.where(Member.match_key.in_(match_keys))
    members = list(query.tuples().iterator())
    columns = [f.name for f in Member._meta.sorted_fields]
    rows = [dict(zip(columns, values, strict=True)) for values in members]
    teams: dict[int, list[dict[str, str]]] = {}
    team_query = (
        TeamMember.select(TeamMember.member, Team.slug, TeamMember.role)
        .join(Team, on=(TeamMember.team == Team.id))
        .where(TeamMember.org == org.id)
    )
    for member_id, slug, role in team_query.tuples().iterator():
        teams.setdefault(member_id, []).append({"team": slug, "role": role})
    sources: dict[str, set[str]] = {}
    keys = None if match_keys is None else match_keys
    source_query = (
        Identity.select(Identity.match_key, Source.name)
        .join(Source, on=(Identity.source == Source.id))
        .where((Identity.org == org.id) & (Identity.active == True))  # noqa: E712 (peewee expression)
    )
    queries = [source_query] if keys is None else [source_query.where(Identity.match_key.in_(c)) for c in batches(keys)]
    for query in queries:
        for key, name in query.tuples().iterator():
            sources.setdefault(key, set()).add(name)
    return in_order(
        document(
            match_key=row["match_key"],
            email=row["email"],
            user_name=row["user_name"],
            display_name=row["display_name"],
            status=row["status"],
            role=row["role"],
            teams=teams.get(row["id"], []),
            sources=sources.get(row["match_key"], ()),
            pinned=row["pinned"],
            manager=row["manager"],
        )
        for row in rows
    )


def document(
    *,
    match_key: str,
    email: str | None,
    user_name: str | None,
    display_name: str | None,
    status: str | None,
    role: str | None,
    teams: Iterable[dict[str, Any]],
    sources: Iterable[str],
    pinned: Any,
    manager: str | None,
) -> dict[str, Any]:
    """One member as ``syncd members list --format json`` prints it, live or ``--at`` a past moment (the CLI JSON
    contract, docs/architecture.md "Contracts": keys are only ever added). The one producer of that document."""
    return {
        "email": email,
        "user_name": user_name,
        "display_name": display_name,
        "status": status,
        "role": role,
        "teams": sorted(({"team": t.get("team"), "role": t.get("role")} for t in teams), key=lambda t: t["team"] or ""),
        "sources": sorted(sources),
        "pinned": bool(pinned),
        "manager": manager,
        "match_key": match_key,
    }


def in_order(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members documents in the one listing order: by email (members without one first), then match key."""
    return sorted(documents, key=lambda d: (d["email"] is not None, d["email"] or "", d["match_key"]))


def detail(org: Organization, who: str, changes: int = 10) -> dict[str, Any]:
    """One member as ``syncd members show`` prints it: the members document (:func:`document`, match key kept), the
    identities of every source behind them, their newest ``changes`` ledger entries (newest first), and when they
    were suspended or deprovisioned and to whom their data went."""
    member = find(org, who)
    (row,) = listing(org, [member.match_key])
    row["identities"] = [
        {"source": name, "key": key, "user_name": user_name, "active": bool(active)}
        for name, key, user_name, active in Identity.select(
            Source.name, Identity.key, Identity.user_name, Identity.active
        )
        .join(Source, on=(Identity.source == Source.id))
        .where((Identity.org == org.id) & (Identity.match_key == member.match_key))
        .order_by(Source.name)
        .tuples()
    ]
    row["history"] = [
        {
            "seq": e.seq,
            "at": iso_seconds(e.at),
            "actor": e.actor,
            "action": e.action,
            "reason": e.reason,
        }
        for e in audit.member_changes(org.id, member.match_key, changes)
    ]
    row["suspended_at"] = member.suspended_at.isoformat() + "Z" if member.suspended_at else None
    row["deprovisioned_at"] = member.deprovisioned_at.isoformat() + "Z" if member.deprovisioned_at else None
    row["transfer_to"] = member.transfer_to
    return row


def find(org: Organization, who: str) -> Member:
    """The member whose match key or email is ``who`` (case-insensitive)."""
    wanted = fold_key(who)
    member = Member.get_or_none((Member.org == org.id) & (Member.match_key == wanted))
    if member is None:
        member = Member.get_or_none((Member.org == org.id) & (dialect.of().fold(Member.email) == wanted))
    if member is None:
        raise MemberError(f"org {org.slug}: no member {who!r}; see 'syncd members list --org {org.slug}'")
    return member


def set_role(
    config: Config, org: Organization, who: str, role: str, pin: bool | None, actor: str, now: datetime
) -> list[str]:
    """Set a member's org role (``pin`` True pins it, False unpins it, None leaves the pin); return what changed.

    Unpinning hands the member back to the rules at once: they are reconciled in the same transaction.
    """
    with write_transaction():
        lock_org(org.id)
        member = find(org, who)
        key = member.match_key
        inputs = gather(org, org_rules(config, org.slug), [key])
        current = inputs.current.members[key]
        state = current.state
        if state.role == "owner" and role != "owner" and state.status == "active" and inputs.current.active_owners <= 1:
            raise MemberError(f"org {org.slug}: {who} is the last owner; make another member owner first")
        actions: list[Action] = []
        label = state.email or state.user_name or key
        if role != state.role:
            after = replace(state, role=role)
            actions.append(
                Action(
                    "member.role",
                    f"member:{key}",
                    label,
                    f"{state.role} -> {role}",
                    f"set by {actor}",
                    state.as_dict(),
                    after.as_dict(),
                )
            )
            state = after
        if pin is not None and pin != state.pinned:
            after = replace(state, pinned=pin)
            summary = f"role {role} pinned" if pin else "role unpinned; rules decide again"
            actions.append(
                Action(
                    "member.pin", f"member:{key}", label, summary, f"set by {actor}", state.as_dict(), after.as_dict()
                )
            )
            state = after
        apply_plan(org, actions, inputs, actor, now)
        lines = [a.line() for a in actions]
        if pin is False and actions:
            reconcile_touched(config, org.id, [key], actor, now)
            final = Member.get_by_id(member.id)
            if final.role != role:
                lines.append(f"{label}: {role} -> {final.role} (the rules decide once unpinned)")
    return lines
