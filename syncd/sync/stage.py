"""Staging: store what one read of a source says, as that source says it (docs/architecture.md, "Data flow", 2).

Set-based for scale: the stored rows of the source are loaded once as tuples, compared with the read, and only the
differences are written (bulk inserts, one batched UPDATE statement per changed row, bulk deletes). A complete
snapshot removes what it no longer lists; an incomplete one only adds and updates; a delta removes only what it
names (docs/architecture.md, invariant 1). Duplicate keys or userNames in one read are reported as problems and make
the read incomplete, never crash it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from connectors.interface import Delta, GroupRecord, ReadResult, Snapshot, UserRecord
from syncd.common.redaction import redact
from syncd.domain.folding import fold
from syncd.domain.matching import match_key
from syncd.store.limits import first_problem
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Organization, Source
from syncd.store.sql import batches, execute_many, insert_many, raw_rows, update_many, written
from syncd.sync.ledger import canonical_json

IDENTITY_FIELDS = (
    "user_name",
    "user_name_lower",
    "email",
    "email_lower",
    "external_id",
    "display_name",
    "given_name",
    "family_name",
    "active",
    "department",
    "title",
    "employee_number",
    "manager_key",
    "match_key",
    "resource",
)
GROUP_FIELDS = ("display_name", "display_name_lower", "external_id", "resource")
MATCH_KEY = IDENTITY_FIELDS.index("match_key")
EMAIL = IDENTITY_FIELDS.index("email")


@dataclass
class StageResult:
    """What staging changed, and whether the read may imply absence (``complete``)."""

    complete: bool = True
    problems: list[str] = field(default_factory=list)
    blind: bool = False
    """The read was a delta that could not see deletions (one of ``problems`` says why)."""
    identities_added: int = 0
    identities_updated: int = 0
    identities_removed: int = 0
    groups_added: int = 0
    groups_updated: int = 0
    groups_removed: int = 0
    memberships_added: int = 0
    memberships_removed: int = 0
    touched_keys: set[str] = field(default_factory=set)
    """Identity keys of this source whose data or (flattened) memberships changed."""
    old_match_keys: set[str] = field(default_factory=set)
    """Match keys that identities had before this read changed or removed them."""
    new_email_keys: set[str] = field(default_factory=set)
    """Identity keys whose email this read changed: the people they manage show it as their manager."""
    newly_unmatched: list[str] = field(default_factory=list)
    """Identity keys this read stored without a match key that had one (or were new): logged once by the run."""

    @property
    def changed(self) -> int:
        return (
            self.identities_added
            + self.identities_updated
            + self.identities_removed
            + self.groups_added
            + self.groups_updated
            + self.groups_removed
            + self.memberships_added
            + self.memberships_removed
        )


def stage(org: Organization, source: Source, result: ReadResult, now: datetime) -> StageResult:
    """Write the read's users, groups and memberships into the source's staged rows; call inside the run's
    write transaction so that staging commits with the plan's changes and the cursor, or not at all."""
    staging = _Staging(org, source, now)
    if isinstance(result, Snapshot):
        staging.snapshot(result)
    else:
        staging.delta(result)
    return staging.result


def identity_values(record: UserRecord, match_on: str) -> tuple[Any, ...]:
    """The stored columns of a user record, in :data:`IDENTITY_FIELDS` order."""
    return (
        record.user_name,
        fold(record.user_name),
        record.email,
        fold(record.email) if record.email else None,
        record.external_id,
        record.display_name,
        record.given_name,
        record.family_name,
        bool(record.active),
        record.department,
        record.title,
        record.employee_number,
        record.manager_key,
        match_key(match_on, user_name=record.user_name, email=record.email, external_id=record.external_id),
        canonical_json(dict(record.attributes)) if record.attributes else "{}",
    )


def _group_values(record: GroupRecord) -> tuple[Any, ...]:
    attributes = canonical_json(dict(record.attributes)) if record.attributes else "{}"
    return (record.display_name, fold(record.display_name), record.external_id, attributes)


class _Staging:
    def __init__(self, org: Organization, source: Source, now: datetime) -> None:
        self.org, self.source, self.now = org, source, now
        self.result = StageResult()

    def _problem(self, text: str) -> None:
        self.result.complete = False
        self.result.problems.append(redact(f"source {self.source.name}: {text}"))

    # -- reads --------------------------------------------------------------------------------------------------

    def _unique_users(self, users: list[UserRecord]) -> dict[str, UserRecord]:
        by_key: dict[str, UserRecord] = {}
        names: set[str] = set()
        for record in users:
            name = fold(record.user_name)
            unfit = _user_problem(record)
            if unfit is not None:
                self._problem(f"user {_shown(record.key)}: {unfit}; record skipped")
                continue
            if record.key in by_key:
                self._problem(f"user key {record.key!r} appears twice in one read; kept the first")
                continue
            if name in names:
                self._problem(f"userName {record.user_name!r} appears twice in one read; kept the first")
                continue
            names.add(name)
            by_key[record.key] = record
        return by_key

    def _unique_groups(self, groups: list[GroupRecord]) -> dict[str, GroupRecord]:
        by_key: dict[str, GroupRecord] = {}
        for record in groups:
            unfit = first_problem(
                [("key", record.key), ("displayName", record.display_name), ("externalId", record.external_id)]
                + [("member key", key) for key in record.member_keys or ()]
            )
            if unfit is not None:
                self._problem(f"group {_shown(record.key)}: {unfit}; record skipped")
                continue
            if record.key in by_key:
                self._problem(f"group key {record.key!r} appears twice in one read; kept the first")
                continue
            by_key[record.key] = record
        return by_key

    def snapshot(self, snapshot: Snapshot) -> None:
        if not snapshot.complete:
            self.result.complete = False
            problems = snapshot.problems or [f"source {self.source.name}: read was incomplete"]
            self.result.problems.extend(redact(problem) for problem in problems)
        users = self._unique_users(snapshot.users)
        groups = self._unique_groups(snapshot.groups)
        implied = {key for user in users.values() for key in user.groups if key not in groups}
        group_rows = {key: _group_values(record) for key, record in groups.items()}
        for key in sorted(implied):
            group_rows[key] = (key, fold(key), None, "{}")
        complete = self.result.complete
        self._upsert_identities(users, remove_missing=complete)
        group_ids = self._upsert_groups(group_rows, remove_missing=complete)
        wanted: set[tuple[str, str]] = set()
        for key, record in groups.items():
            wanted.update((key, member) for member in record.member_keys or ())
        for user in users.values():
            wanted.update((group_key, user.key) for group_key in user.groups)
        self._sync_memberships(wanted, group_ids, scope=None, remove_missing=complete)

    def delta(self, delta: Delta) -> None:
        users = self._unique_users(delta.users)
        groups = self._unique_groups(delta.groups)
        self._upsert_identities(users, remove_missing=False)
        removed_users = set(delta.removed_user_keys)
        removed_groups = set(delta.removed_group_keys)
        if delta.present_user_keys is not None:
            # A census of the scope: stored users it does not list have left (deleted or moved out).
            present = delta.present_user_keys | set(users)
            stored = Identity.select(Identity.key).where(Identity.source == self.source.id).tuples()
            removed_users |= {key for (key,) in stored if key not in present}
        if delta.present_group_keys is not None:
            present = delta.present_group_keys | set(groups)
            removed_groups |= {key for key in self._stored_group_keys() if key not in present}
        if delta.blind_to_deletions:
            self.result.blind = True
            self._problem(delta.blind_to_deletions)
        if removed_users:
            self._remove_identities(removed_users)
        named = set(groups) | set(delta.members_added) | set(delta.members_removed)
        named |= {key for user in users.values() for key in user.groups}
        stored_groups = self._stored_group_keys()
        group_rows = {key: _group_values(record) for key, record in groups.items()}
        for key in named - set(groups) - set(stored_groups) - removed_groups:
            group_rows[key] = (key, fold(key), None, "{}")
        group_ids = self._upsert_groups(group_rows, remove_missing=False)
        if removed_groups:
            self._remove_groups(removed_groups & set(group_ids), group_ids)
            for key in removed_groups:
                group_ids.pop(key, None)
        # A group listed with its members replaces its member list; the rest add or remove named members only.
        replaced = {key for key, record in groups.items() if record.member_keys is not None}
        wanted = {(key, member) for key in replaced for member in groups[key].member_keys or ()}
        self._sync_memberships(wanted, group_ids, scope=replaced, remove_missing=True)
        added = {(g, m) for g, members in delta.members_added.items() for m in members}
        added |= {(g, user.key) for user in users.values() for g in user.groups}
        added = {(g, m) for g, m in added if g in group_ids and g not in replaced}
        removed = {(g, m) for g, members in delta.members_removed.items() for m in members if g not in replaced}
        self._change_memberships(added, removed, group_ids)

    # -- identities ---------------------------------------------------------------------------------------------

    def _stored_identities(self, keys: set[str] | None) -> dict[str, tuple[int, tuple[Any, ...]]]:
        columns = [getattr(Identity, name) for name in IDENTITY_FIELDS]
        stored: dict[str, tuple[int, tuple[Any, ...]]] = {}
        base = Identity.select(Identity.id, Identity.key, *columns).where(Identity.source == self.source.id)
        queries = [base] if keys is None else [base.where(Identity.key.in_(c)) for c in batches(keys)]
        for query in queries:
            for row in raw_rows(query):
                stored[row[1]] = (row[0], tuple(row[2:]))
        return stored

    def _upsert_identities(self, users: dict[str, UserRecord], remove_missing: bool) -> None:
        stored = self._stored_identities(None if remove_missing else set(users))
        match_on = self.org.match_on
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for key, record in users.items():
            values = identity_values(record, match_on)
            have = stored.get(key)
            if values[MATCH_KEY] is None and (have is None or have[1][MATCH_KEY] is not None):
                self.result.newly_unmatched.append(key)
            if have is None:
                inserts.append((self.org.id, self.source.id, key, *values, self.now, self.now))
                self.result.touched_keys.add(key)
            elif have[1] != values:
                updates.append((*values, self.now, have[0]))
                self.result.touched_keys.add(key)
                self.result.old_match_keys.add(have[1][MATCH_KEY])
                if have[1][EMAIL] != values[EMAIL]:
                    self.result.new_email_keys.add(key)
        fields = [Identity.org, Identity.source, Identity.key]
        fields += [getattr(Identity, n) for n in IDENTITY_FIELDS] + [Identity.created_at, Identity.updated_at]
        insert_many(Identity, fields, inserts)
        self._update_rows(Identity, IDENTITY_FIELDS, updates)
        self.result.identities_added += len(inserts)
        self.result.identities_updated += len(updates)
        if remove_missing:
            gone = set(stored) - set(users)
            if gone:
                self._remove_identities(gone)

    def _remove_identities(self, keys: set[str]) -> None:
        for chunk in batches(sorted(keys)):
            query = Identity.select(Identity.match_key).where(
                (Identity.source == self.source.id) & Identity.key.in_(chunk)
            )
            self.result.old_match_keys.update(key for (key,) in raw_rows(query) if key)
            GroupMember.delete().where(
                (GroupMember.source == self.source.id) & GroupMember.member_key.in_(chunk)
            ).execute()
            self.result.identities_removed += (
                Identity.delete().where((Identity.source == self.source.id) & Identity.key.in_(chunk)).execute()
            )

    def _update_rows(self, model: type[peewee.Model], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        update_many(model, (*names, "updated_at"), rows, bump_version=True)

    # -- groups -------------------------------------------------------------------------------------------------

    def _stored_group_keys(self) -> dict[str, int]:
        query = DirectoryGroup.select(DirectoryGroup.key, DirectoryGroup.id).where(
            DirectoryGroup.source == self.source.id
        )
        return dict(query.tuples())

    def _upsert_groups(self, rows: dict[str, tuple[Any, ...]], remove_missing: bool) -> dict[str, int]:
        """Write changed groups; return every stored group key of the source → row id."""
        columns = [getattr(DirectoryGroup, n) for n in GROUP_FIELDS]
        query = DirectoryGroup.select(DirectoryGroup.id, DirectoryGroup.key, *columns).where(
            DirectoryGroup.source == self.source.id
        )
        stored = {row[1]: (row[0], tuple(row[2:])) for row in query.tuples()}
        inserts, updates = [], []
        for key, values in rows.items():
            have = stored.get(key)
            if have is None:
                inserts.append((self.org.id, self.source.id, key, *values, self.now, self.now))
            elif have[1] != values:
                updates.append((*values, self.now, have[0]))
                if have[1][:3] != values[:3]:
                    self._touch_under([have[0]])
        fields = [DirectoryGroup.org, DirectoryGroup.source, DirectoryGroup.key, *columns]
        fields += [DirectoryGroup.created_at, DirectoryGroup.updated_at]
        insert_many(DirectoryGroup, fields, inserts)
        self._update_rows(DirectoryGroup, GROUP_FIELDS, updates)
        self.result.groups_added += len(inserts)
        self.result.groups_updated += len(updates)
        ids = {key: value[0] for key, value in stored.items()}
        if inserts:
            ids = self._stored_group_keys()
        if remove_missing:
            gone = set(ids) - set(rows)
            if gone:
                self._remove_groups(gone, ids)
                for key in gone:
                    ids.pop(key)
        return ids

    def _remove_groups(self, keys: set[str], ids: dict[str, int]) -> None:
        row_ids = [ids[k] for k in keys if k in ids]
        self._touch_under(row_ids)
        for chunk in batches(row_ids):
            GroupMember.delete().where(GroupMember.group.in_(chunk)).execute()
            self.result.groups_removed += DirectoryGroup.delete().where(DirectoryGroup.id.in_(chunk)).execute()
        for chunk in batches(sorted(keys)):
            GroupMember.delete().where(
                (GroupMember.source == self.source.id)
                & (GroupMember.member_kind == "Group")
                & GroupMember.member_key.in_(chunk)
            ).execute()

    # -- memberships --------------------------------------------------------------------------------------------

    def _sync_memberships(
        self, wanted: set[tuple[str, str]], group_ids: dict[str, int], scope: set[str] | None, remove_missing: bool
    ) -> None:
        """Make the memberships of the groups in ``scope`` (all when None) equal ``wanted``, comparing
        (group row id, member key) pairs as the driver returns them."""
        if scope is not None and not scope:
            return
        query = GroupMember.select(GroupMember.group, GroupMember.member_key).where(
            GroupMember.source == self.source.id
        )
        if scope is None:
            queries = [query]
        else:
            ids = [group_ids[k] for k in scope if k in group_ids]
            queries = [query.where(GroupMember.group.in_(chunk)) for chunk in batches(ids)]
        stored: set[tuple[int, str]] = set()
        for q in queries:
            stored.update(tuple(row) for row in raw_rows(q))
        wanted_ids = {(group_ids[g], m) for g, m in wanted if g in group_ids}
        by_id = {gid: key for key, gid in group_ids.items()}
        self._insert_memberships({(by_id[g], m) for g, m in wanted_ids - stored}, group_ids)
        if remove_missing:
            gone = stored - wanted_ids
            self._touch_members({(by_id.get(g, ""), m) for g, m in gone}, group_ids)
            self._delete_memberships(sorted(gone))

    def _delete_memberships(self, pairs: list[tuple[int, str]]) -> None:
        if not pairs:
            return
        table, group, member = GroupMember._meta.table_name, GroupMember.group.column_name, "member_key"
        execute_many(
            written(
                "delete membership",
                lambda d: (
                    f"DELETE FROM {d.quote(table)} WHERE {d.quote(group)} = {d.param} AND {d.quote(member)} = {d.param}"
                ),
            ),
            pairs,
        )
        self.result.memberships_removed += len(pairs)

    def _insert_memberships(self, pairs: set[tuple[str, str]], group_ids: dict[str, int]) -> None:
        if not pairs:
            return
        self._touch_members(pairs, group_ids)
        rows = [
            (self.org.id, self.source.id, group_ids[g], m, "Group" if m in group_ids else "User")
            for g, m in sorted(pairs)
        ]
        fields = [
            GroupMember.org,
            GroupMember.source,
            GroupMember.group,
            GroupMember.member_key,
            GroupMember.member_kind,
        ]
        insert_many(GroupMember, fields, rows)
        self.result.memberships_added += len(rows)

    def _change_memberships(
        self, added: set[tuple[str, str]], removed: set[tuple[str, str]], group_ids: dict[str, int]
    ) -> None:
        pairs = added | {(g, m) for g, m in removed if g in group_ids}
        if not pairs:
            return
        existing: set[tuple[str, str]] = set()
        by_id = {gid: key for key, gid in group_ids.items()}
        for chunk in batches(sorted({group_ids[g] for g, _ in pairs})):
            query = GroupMember.select(GroupMember.group, GroupMember.member_key).where(GroupMember.group.in_(chunk))
            existing.update((by_id[g], m) for g, m in raw_rows(query))
        self._insert_memberships(added - existing - removed, group_ids)
        self._touch_members(removed & existing, group_ids)
        for g, m in sorted(removed & existing):
            self.result.memberships_removed += (
                GroupMember.delete()
                .where((GroupMember.group == group_ids[g]) & (GroupMember.member_key == m))
                .execute()
            )

    # -- what changed, for planning only the members it affects ------------------------------------------------

    def _touch_members(self, pairs: set[tuple[str, str]], group_ids: dict[str, int]) -> None:
        """A membership (group, member) changed: the member, or every user under a nested member group."""
        nested = []
        for _, member in pairs:
            if member in group_ids:
                nested.append(group_ids[member])
            else:
                self.result.touched_keys.add(member)
        if nested:
            self._touch_under(nested)

    def _touch_under(self, group_ids: list[int]) -> None:
        """Every user directly or indirectly in these groups (a rename or a nesting change reaches them all)."""
        seen: set[int] = set()
        frontier = set(group_ids)
        while frontier:
            seen |= frontier
            child_keys: list[str] = []
            for chunk in batches(sorted(frontier)):
                query = GroupMember.select(GroupMember.member_key, GroupMember.member_kind).where(
                    GroupMember.group.in_(chunk)
                )
                for key, kind in raw_rows(query):
                    if kind == "Group":
                        child_keys.append(key)
                    else:
                        self.result.touched_keys.add(key)
            frontier = set()
            for chunk in batches(child_keys):
                query = DirectoryGroup.select(DirectoryGroup.id).where(
                    (DirectoryGroup.source == self.source.id) & DirectoryGroup.key.in_(chunk)
                )
                frontier.update(gid for (gid,) in raw_rows(query))
            frontier -= seen


def touched_match_keys(source: Source, staged: StageResult) -> set[str]:
    """The match keys of every member a staged read may have changed: old keys and current ones."""
    keys = set(staged.old_match_keys)
    for chunk in batches(sorted(staged.touched_keys)):
        query = Identity.select(Identity.match_key).where((Identity.source == source.id) & Identity.key.in_(chunk))
        keys.update(key for (key,) in raw_rows(query) if key)
    # A manager's new email is the ``manager`` of everyone they manage (rare: only identities whose email changed).
    for chunk in batches(sorted(staged.new_email_keys)):
        query = Identity.select(Identity.match_key).where(
            (Identity.source == source.id) & Identity.manager_key.in_(chunk)
        )
        keys.update(key for (key,) in raw_rows(query) if key)
    return keys


def rekey(org: Organization) -> int:
    """Recompute every identity's match key after the org's ``match_on`` may have changed; return how many moved.

    In Python, not SQL, so that keys fold case exactly as :func:`syncd.domain.matching.match_key` does (SQLite's LOWER
    folds ASCII only). Identities of every source, SCIM included, move together before the whole org is planned.
    """
    query = Identity.select(
        Identity.id, Identity.user_name, Identity.email, Identity.external_id, Identity.match_key
    ).where(Identity.org == org.id)
    moved = []
    for row_id, user_name, email, external_id, have in raw_rows(query):
        want = match_key(org.match_on, user_name=user_name, email=email, external_id=external_id)
        if want != have:
            moved.append((want, row_id))
    update_many(Identity, ("match_key",), moved)
    return len(moved)


def _user_problem(record: UserRecord) -> str | None:
    """Why the store cannot keep this record (syncd.store.limits): an identifier too long, or a NUL anywhere."""
    unfit = first_problem(
        [("key", record.key), ("userName", record.user_name), ("email", record.email)]
        + [("externalId", record.external_id)]
        + [("group key", key) for key in record.groups]
    )
    if unfit is not None:
        return unfit
    texts = (record.display_name, record.given_name, record.family_name, record.department, record.title)
    if any("\x00" in text for text in (*texts, record.employee_number, record.manager_key) if text):
        return "an attribute holds a NUL character"
    return None


def _shown(key: str) -> str:
    """A record's key for a problem line: printable (repr), and short enough for one line."""
    return repr(key if len(key) <= 80 else key[:77] + "...")
