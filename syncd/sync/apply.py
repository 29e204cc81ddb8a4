"""Applying a plan: member, team and role changes, one ledger entry per action, and an outbox event per action.

Runs inside the caller's write transaction (docs/architecture.md, "Data flow" and invariant 2): a crash before commit
leaves nothing behind, after commit everything is there together. Writes are batched so that a 100,000-person first sync
is a few thousand statements, not hundreds of thousands.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from syncd.domain.reconcile import Action, MemberState, Plan
from syncd.store import sql
from syncd.store.models import LedgerEntry, Member, Organization, OutboxEvent, Team, TeamMember, new_message_id
from syncd.store.sql import batches, insert_many, update_many
from syncd.sync import ledger, outbox
from syncd.sync.gather import Inputs

Advance = Callable[[int], None]
ENTRY_COLUMNS = ("org", "seq", "at", "actor", "action", "target", "before", "after", "reason", "prev_hash", "hash")
JOIN_COLUMNS = (
    "org",
    "match_key",
    "email",
    "user_name",
    "display_name",
    "status",
    "role",
    "pinned",
    "manager",
    "created_at",
    "updated_at",
)


def apply_plan(
    org: Organization,
    plan: Plan | list[Action] | tuple[Action, ...],
    inputs: Inputs,
    actor: str,
    now: datetime,
    advance: Advance | None = None,
) -> int:
    """Write every action of ``plan``; return how many were applied."""
    actions = tuple(plan.actions if isinstance(plan, Plan) else plan)
    if not actions:
        return 0
    team_ids = dict(inputs.teams)
    for action in actions:
        if action.action == "team.create" and action.after is not None:
            slug = action.after["slug"]
            if slug not in team_ids:
                parent = action.after.get("parent")
                team = Team.create(
                    org=org.id, slug=slug, name=action.after["name"], parent=team_ids.get(parent), created_at=now
                )
                team_ids[slug] = team.id
    _write_members(org, actions, inputs, team_ids, now, advance)
    # The caller took the org lock (ledger.lock_org) before planning; the head is read under it.
    chain = ledger.head(org.id, lock=False)
    entries = [
        ledger.make_entry(
            org.id,
            chain,
            actor=actor,
            action=a.action,
            target=a.target,
            before=a.before,
            after=a.after,
            reason=_ledger_reason(a),
            at=now,
        )
        for a in actions
    ]
    # Entries built by ledger.make_entry (the hash chain), written with one prepared statement: peewee's
    # insert_many (ledger.insert_rows) spent a third of a 100,000-person first sync building SQL text.
    insert_many(
        LedgerEntry,
        [LedgerEntry._meta.fields[name] for name in ENTRY_COLUMNS],
        [tuple(entry[name] for name in ENTRY_COLUMNS) for entry in entries],
    )
    events = [
        (
            org.id,
            a.action,
            outbox.change_payload(
                org.slug,
                action=a.action,
                target=a.target,
                before=a.before,
                after=a.after,
                reason=a.reason,
                at=now,
                seq=entry["seq"],
            ),
            now,
            now,
            new_message_id(),
            a.target,
        )
        for a, entry in zip(actions, entries, strict=True)
    ]
    outbox_fields = [
        OutboxEvent.org,
        OutboxEvent.event_type,
        OutboxEvent.payload,
        OutboxEvent.created_at,
        OutboxEvent.next_attempt_at,
        OutboxEvent.message_id,
        OutboxEvent.order_key,
    ]
    insert_many(OutboxEvent, outbox_fields, events)
    return len(actions)


def _ledger_reason(action: Action) -> str:
    detail = "".join(f"; {k}: {v}" for k, v in sorted(action.details.items()))
    return f"{action.summary} ({action.reason}){detail}"


def _write_members(
    org: Organization,
    actions: tuple[Action, ...],
    inputs: Inputs,
    team_ids: dict[str, int],
    now: datetime,
    advance: Advance | None,
) -> None:
    """Turn each member's chain of actions into one row write and a team-membership diff."""
    chains: dict[str, list[Action]] = {}
    for action in actions:
        if action.target.startswith("member:"):
            chains.setdefault(action.target.removeprefix("member:"), []).append(action)
    joins: list[dict[str, Any]] = []
    updates: list[tuple[Any, ...]] = []
    team_changes: list[tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = []
    for key, chain in chains.items():
        final = MemberState.from_dict(chain[-1].after or {})
        first = chain[0]
        before_teams = () if first.before is None else MemberState.from_dict(first.before).teams
        if first.action == "member.join":
            joins.append(
                {
                    "org": org.id,
                    "match_key": key,
                    "email": final.email,
                    "user_name": final.user_name,
                    "display_name": final.display_name,
                    "status": final.status,
                    "role": final.role,
                    "pinned": final.pinned,
                    "manager": final.manager,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            row = inputs.members[key]
            suspended, gone, transfer = row.suspended_at, row.deprovisioned_at, row.transfer_to
            for action in chain:
                if action.action == "member.suspend":
                    suspended = now
                elif action.action == "member.deprovision":
                    gone, transfer = now, action.details.get("transfer_to")
                elif action.action == "member.reactivate":
                    suspended = gone = transfer = None
            updates.append(
                (
                    final.email,
                    final.user_name,
                    final.display_name,
                    final.status,
                    final.role,
                    final.pinned,
                    final.manager,
                    suspended,
                    gone,
                    transfer,
                    now,
                    row.id,
                )
            )
        if before_teams != final.teams:
            team_changes.append((key, before_teams, final.teams))
    member_ids = {key: row.id for key, row in inputs.members.items()}
    join_fields = [Member._meta.fields[name] for name in JOIN_COLUMNS]
    for chunk in batches(joins, 5000):
        insert_many(Member, join_fields, [tuple(j[name] for name in JOIN_COLUMNS) for j in chunk])
        if advance:
            advance(len(chunk))
    # Only joined members who also join teams need their new row ids (most SCIM creates join none).
    joined_teams = {key for key, _, _ in team_changes} - member_ids.keys()
    if joined_teams:
        for chunk in batches(sorted(joined_teams)):
            found = sql.rows(
                "joined member ids",
                lambda chunk=chunk: Member.select(Member.match_key, Member.id).where(
                    (Member.org == org.id) & Member.match_key.in_(chunk)
                ),
                [org.id, *chunk],
            )
            member_ids.update(dict(found))
    _update_members(updates)
    if advance and updates:
        advance(len(updates))
    _write_teams(org, team_changes, member_ids, team_ids)


def _update_members(rows: list[tuple[Any, ...]]) -> None:
    names = (
        "email",
        "user_name",
        "display_name",
        "status",
        "role",
        "pinned",
        "manager",
        "suspended_at",
        "deprovisioned_at",
        "transfer_to",
        "updated_at",
    )
    update_many(Member, names, rows)


def _write_teams(
    org: Organization,
    changes: list[tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]],
    member_ids: dict[str, int],
    team_ids: dict[str, int],
) -> None:
    inserts: list[tuple[int, int, int, str]] = []
    deletes: list[tuple[int, int]] = []
    role_updates: list[tuple[str, int, int]] = []
    for key, before, after in changes:
        member_id = member_ids[key]
        old, new = dict(before), dict(after)
        for slug in old.keys() - new.keys():
            deletes.append((team_ids[slug], member_id))
        for slug, role in new.items():
            if slug not in old:
                inserts.append((org.id, team_ids[slug], member_id, role))
            elif old[slug] != role:
                role_updates.append((role, team_ids[slug], member_id))
    for team_id, member_id in deletes:
        sql.execute(
            "team leave",
            lambda team_id=team_id, member_id=member_id: TeamMember.delete().where(
                (TeamMember.team == team_id) & (TeamMember.member == member_id)
            ),
            [team_id, member_id],
        )
    fields = [TeamMember.org, TeamMember.team, TeamMember.member, TeamMember.role]
    insert_many(TeamMember, fields, inserts)
    for role, team_id, member_id in role_updates:
        sql.execute(
            "team role",
            lambda role=role, team_id=team_id, member_id=member_id: TeamMember.update(role=role).where(
                (TeamMember.team == team_id) & (TeamMember.member == member_id)
            ),
            [role, team_id, member_id],
        )
