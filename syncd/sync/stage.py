"""Staging: store what one read of a source says, as that source says it (docs/architecture.md, "Data flow", 2).

Set-based for scale: the stored rows of the source are loaded once as tuples, compared with the read, and only the
differences are written (bulk inserts, one batched UPDATE statement per changed row, bulk deletes). A complete
snapshot removes what it no longer lists; an incomplete one only adds and updates; a delta removes only what it
names (docs/architecture.md, invariant 1). Duplicate keys or userNames in one read are reported as problems and make
the read incomplete, never crash it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from connectors.interface import Delta, GroupRecord, ReadResult, Snapshot, UserRecord
from syncd.common.redaction import redact
from syncd.domain.folding import fold
from syncd.domain.matching import match_key
from syncd.store import dialect, sql
from syncd.store.limits import MAX_IDENTIFIER_CHARS, first_problem
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Organization, Source
from syncd.store.sql import batches, execute_many, insert_many, raw_rows, rows_in, update_many, written
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
CHUNK = 5000
"""Users staged at a time: their stored rows and memberships are read and written together."""
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

    def _unique_users(
        self, users: Iterable[UserRecord], keys: set[str] | None = None, names: set[str] | None = None
    ) -> dict[str, UserRecord]:
        """The fit records by key, the first of each key and userName; ``keys`` and ``names`` carry what earlier
        chunks of the same read held."""
        by_key: dict[str, UserRecord] = {}
        keys = set() if keys is None else keys
        names = set() if names is None else names
        for record in users:
            name = fold(record.user_name)
            unfit = _user_problem(record)
            if unfit is not None:
                self._problem(f"user {_shown(record.key)}: {unfit}; record skipped")
                continue
            if record.key in keys:
                self._problem(f"user key {record.key!r} appears twice in one read; kept the first")
                continue
            keys.add(record.key)
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
        """Stage a snapshot in chunks of :data:`CHUNK` users, so that memory does not grow with the directory:
        ``snapshot.users`` may be a stream whose verdict (``complete``, ``problems``) is known only once it is
        exhausted. Each chunk's users and their memberships are added and updated as they come; removals (people,
        groups and memberships the read no longer lists) wait for the verdict and happen only for a complete read."""
        groups = self._unique_groups(snapshot.groups)
        stored_groups = self._stored_groups()
        self._write_groups({key: _group_values(record) for key, record in groups.items()}, stored_groups)
        named = set(groups)
        listed: dict[str, set[str]] = {}
        for key, record in groups.items():
            for member in record.member_keys or ():
                listed.setdefault(member, set()).add(key)
        seen: set[str] = set()
        names: set[str] = set()
        unwanted: set[tuple[int, str]] = set()
        for chunk in batches(snapshot.users, CHUNK):
            users = self._unique_users(chunk, seen, names)
            implied = {key for user in users.values() for key in user.groups if key not in named}
            named |= implied
            self._write_groups({key: (key, fold(key), None, "{}") for key in sorted(implied)}, stored_groups)
            self._upsert_identities(users, self._stored_identities(set(users)))
            group_ids = {key: row[0] for key, row in stored_groups.items()}
            wanted = {(group, key) for key, user in users.items() for group in user.groups}
            wanted.update((group, key) for key in users for group in listed.pop(key, ()))
            unwanted |= self._sync_memberships(wanted, group_ids, members=list(users))
        if not snapshot.complete:
            self.result.complete = False
            problems = snapshot.problems or [f"source {self.source.name}: read was incomplete"]
            self.result.problems.extend(redact(problem) for problem in problems)
        complete = self.result.complete
        group_ids = {key: row[0] for key, row in stored_groups.items()}
        # Members no user record of this read carries: nested groups, keys the read does not hold as users (among
        # them people stored by an earlier read, whose memberships are compared like those of any other member).
        rest = {(group, member) for member, keys in listed.items() for group in keys}
        if rest or complete:
            unwanted |= self._sync_memberships(rest, group_ids, members=sorted(listed), non_people=True)
        if not complete:
            return
        stored_keys = Identity.select(Identity.key).where(Identity.source == self.source.id)
        gone = {key for (key,) in raw_rows(stored_keys) if key not in seen}
        # A person who left keeps the memberships the read still lists under a group; the others go with them.
        unlisted = gone - set(listed)
        self._remove_memberships_of(unlisted)
        self._remove_identities(gone)
        unwanted = {(g, m) for g, m in unwanted if m not in unlisted}
        by_id = {gid: key for key, gid in group_ids.items()}
        self._touch_members({(by_id.get(g, ""), m) for g, m in unwanted}, group_ids)
        self._delete_memberships(sorted(unwanted))
        gone_groups = set(group_ids) - named
        if gone_groups:
            self._remove_groups(gone_groups, group_ids)

    def delta(self, delta: Delta) -> None:
        users = self._unique_users(delta.users)
        groups = self._unique_groups(delta.groups)
        for chunk in batches(users, CHUNK):
            some = {key: users[key] for key in chunk}
            self._upsert_identities(some, self._stored_identities(set(some)))
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
            self._remove_memberships_of(removed_users)
            self._remove_identities(removed_users)
        named = set(groups) | set(delta.members_added) | set(delta.members_removed)
        named |= {key for user in users.values() for key in user.groups}
        stored_groups = self._stored_group_keys()
        group_rows = {key: _group_values(record) for key, record in groups.items()}
        for key in named - set(groups) - set(stored_groups) - removed_groups:
            group_rows[key] = (key, fold(key), None, "{}")
        stored = self._stored_groups()
        self._write_groups(group_rows, stored)
        group_ids = {key: row[0] for key, row in stored.items()}
        if removed_groups:
            self._remove_groups(removed_groups & set(group_ids), group_ids)
            for key in removed_groups:
                group_ids.pop(key, None)
        # A group listed with its members replaces its member list; the rest add or remove named members only.
        replaced = {key for key, record in groups.items() if record.member_keys is not None}
        wanted = {(key, member) for key in replaced for member in groups[key].member_keys or ()}
        self._replace_memberships(wanted, group_ids, replaced)
        added = {(g, m) for g, members in delta.members_added.items() for m in members}
        added |= {(g, user.key) for user in users.values() for g in user.groups}
        added = {(g, m) for g, m in added if g in group_ids and g not in replaced}
        removed = {(g, m) for g, members in delta.members_removed.items() for m in members if g not in replaced}
        self._change_memberships(added, removed, group_ids)

    # -- identities ---------------------------------------------------------------------------------------------

    def _stored_identities(self, keys: set[str]) -> dict[str, tuple[int, tuple[Any, ...]]]:
        """The stored rows of these keys: row id and the :data:`IDENTITY_FIELDS` values."""
        columns = ["id", "key", *(Identity._meta.fields[name].column_name for name in IDENTITY_FIELDS)]
        where = [Identity.source.column_name]
        found = rows_in("stored identities", Identity._meta.table_name, columns, where, [self.source.id], "key", keys)
        return {row[1]: (row[0], tuple(row[2:])) for row in found}

    def _upsert_identities(self, users: dict[str, UserRecord], stored: dict[str, tuple[int, tuple[Any, ...]]]) -> None:
        """Insert the new users and update the changed ones, given the stored rows of their keys."""
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

    def _remove_identities(self, keys: set[str]) -> None:
        for chunk in batches(sorted(keys)):
            query = Identity.select(Identity.match_key).where(
                (Identity.source == self.source.id) & Identity.key.in_(chunk)
            )
            self.result.old_match_keys.update(key for (key,) in raw_rows(query) if key)
            self.result.identities_removed += (
                Identity.delete().where((Identity.source == self.source.id) & Identity.key.in_(chunk)).execute()
            )

    def _remove_memberships_of(self, keys: set[str]) -> None:
        """Every membership of these member keys (people who left), in bulk."""
        for chunk in batches(sorted(keys)):
            GroupMember.delete().where(
                (GroupMember.source == self.source.id) & GroupMember.member_key.in_(chunk)
            ).execute()

    def _update_rows(self, model: type[peewee.Model], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        update_many(model, (*names, "updated_at"), rows, bump_version=True)

    # -- groups -------------------------------------------------------------------------------------------------

    def _stored_group_keys(self) -> dict[str, int]:
        query = DirectoryGroup.select(DirectoryGroup.key, DirectoryGroup.id).where(
            DirectoryGroup.source == self.source.id
        )
        return dict(query.tuples())

    def _stored_groups(self) -> dict[str, tuple[int, tuple[Any, ...]]]:
        """Every stored group of the source: key → (row id, :data:`GROUP_FIELDS` values)."""
        columns = [getattr(DirectoryGroup, n) for n in GROUP_FIELDS]
        query = DirectoryGroup.select(DirectoryGroup.id, DirectoryGroup.key, *columns).where(
            DirectoryGroup.source == self.source.id
        )
        return {row[1]: (row[0], tuple(row[2:])) for row in query.tuples()}

    def _write_groups(self, rows: dict[str, tuple[Any, ...]], stored: dict[str, tuple[int, tuple[Any, ...]]]) -> None:
        """Insert the new groups and update the changed ones; ``stored`` is kept up to date with what was written."""
        if not rows:
            return
        inserts, updates = [], []
        for key, values in rows.items():
            have = stored.get(key)
            if have is None:
                inserts.append((self.org.id, self.source.id, key, *values, self.now, self.now))
            elif have[1] != values:
                updates.append((*values, self.now, have[0]))
                stored[key] = (have[0], values)
                if have[1][:3] != values[:3]:
                    self._touch_under([have[0]])
        columns = [getattr(DirectoryGroup, n) for n in GROUP_FIELDS]
        fields = [DirectoryGroup.org, DirectoryGroup.source, DirectoryGroup.key, *columns]
        fields += [DirectoryGroup.created_at, DirectoryGroup.updated_at]
        insert_many(DirectoryGroup, fields, inserts)
        self._update_rows(DirectoryGroup, GROUP_FIELDS, updates)
        self.result.groups_added += len(inserts)
        self.result.groups_updated += len(updates)
        if inserts:
            ids = self._stored_group_keys()
            for key, values in rows.items():
                if key not in stored:
                    stored[key] = (ids[key], values)

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
        self,
        wanted: set[tuple[str, str]],
        group_ids: dict[str, int],
        members: list[str],
        non_people: bool = False,
    ) -> set[tuple[int, str]]:
        """Add the ``wanted`` (group key, member key) pairs not stored yet, among the stored memberships of these
        ``members`` (and, with ``non_people``, of every member that is not one of the source's people, such as a
        nested group), and return the stored (group row id, member key) pairs not wanted, for the caller to remove
        once it knows the read is complete. ``wanted`` names only these members."""
        stored: set[tuple[int, str]] = set()
        if non_people:
            stored.update(
                sql.run(sql.written("memberships of non-people", _memberships_of_non_people), [self.source.id])
            )
        table, columns = GroupMember._meta.table_name, [GroupMember.group.column_name, "member_key"]
        where = [GroupMember.source.column_name]
        stored.update(rows_in("stored memberships", table, columns, where, [self.source.id], "member_key", members))
        wanted_ids = {(group_ids[g], m) for g, m in wanted if g in group_ids}
        by_id = {gid: key for key, gid in group_ids.items()}
        self._insert_memberships({(by_id[g], m) for g, m in wanted_ids - stored}, group_ids)
        return stored - wanted_ids

    def _replace_memberships(self, wanted: set[tuple[str, str]], group_ids: dict[str, int], scope: set[str]) -> None:
        """Make the memberships of the groups in ``scope`` equal ``wanted`` (a delta listing whole member lists)."""
        ids = [group_ids[k] for k in scope if k in group_ids]
        if not ids:
            return
        query = GroupMember.select(GroupMember.group, GroupMember.member_key).where(
            GroupMember.source == self.source.id
        )
        stored: set[tuple[int, str]] = set()
        for chunk in batches(ids):
            stored.update(raw_rows(query.where(GroupMember.group.in_(chunk))))
        wanted_ids = {(group_ids[g], m) for g, m in wanted if g in group_ids}
        by_id = {gid: key for key, gid in group_ids.items()}
        self._insert_memberships({(by_id[g], m) for g, m in wanted_ids - stored}, group_ids)
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


def _memberships_of_non_people(d: dialect.Dialect) -> str:
    """(group id, member key) of the source's memberships whose member is none of its people: SQLite and
    PostgreSQL answer it through the (source, key) index without sending the people's memberships over."""
    gm, identity = d.quote(GroupMember._meta.table_name), d.quote(Identity._meta.table_name)
    group, source, member = (d.quote(c) for c in (GroupMember.group.column_name, "source_id", "member_key"))
    return (
        f"SELECT m.{group}, m.{member} FROM {gm} m WHERE m.{source} = {d.param} AND NOT EXISTS "
        f"(SELECT 1 FROM {identity} i WHERE i.{source} = m.{source} AND i.{d.quote('key')} = m.{member})"
    )


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
    identifiers = (record.key, record.user_name, record.email or "", record.external_id or "", *record.groups)
    texts = (record.display_name, record.given_name, record.family_name, record.department, record.title)
    texts += (record.employee_number, record.manager_key)
    if max(map(len, identifiers)) <= MAX_IDENTIFIER_CHARS and "\x00" not in "".join(
        [*identifiers, *filter(None, texts)]
    ):
        return None  # the common case, checked at once; the checks below name the problem
    unfit = first_problem(
        [("key", record.key), ("userName", record.user_name), ("email", record.email)]
        + [("externalId", record.external_id)]
        + [("group key", key) for key in record.groups]
    )
    if unfit is not None:
        return unfit
    if any("\x00" in text for text in texts if text):
        return "an attribute holds a NUL character"
    return None


def _shown(key: str) -> str:
    """A record's key for a problem line: printable (repr), and short enough for one line."""
    return repr(key if len(key) <= 80 else key[:77] + "...")
