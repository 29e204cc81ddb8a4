"""The statements every SCIM request runs, on both backends, written once with :mod:`syncd.store.sql`.

peewee spends about 0.2 ms building the text of even a one-row SELECT; the database answers it in a few
microseconds. The statements of the hot paths (a user or group by id, a lookup by userName / externalId / id, a
user's groups, creating, updating and deleting users, a group's member rows) are therefore written here against the
dialect, composed once per database kind by :func:`syncd.store.sql.written` and executed directly; ``IN`` lists go
in chunks through :func:`syncd.store.sql.keys_in`. Filters and sorting stay peewee (:mod:`scim.filters`). Same
tables, same semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.store.dialect import Dialect, stored_time
from syncd.store.sql import batches, keys_in, run, written

USER_COLUMNS = ("id", "key", "resource", "version", "created_at", "updated_at", "match_key")
LOOKUP_COLUMNS = {"key", "user_name_lower", "external_id"}


@dataclass
class UserRow:
    """The columns of an identity a SCIM request reads."""

    id: int
    key: str
    resource: str
    version: int
    created_at: datetime
    updated_at: datetime
    match_key: str | None


def _user(row: Sequence[Any]) -> UserRow:
    return UserRow(row[0], row[1], row[2], row[3], stored_time(row[4]), stored_time(row[5]), row[6])


_SELECT_USER = 'SELECT "id", "key", "resource", "version", "created_at", "updated_at", "match_key" FROM "identity"'


def user_by_key(source_id: int, key: str) -> UserRow | None:
    text = written("user by key", lambda d: f'{_SELECT_USER} WHERE "source_id" = {d.param} AND "key" = {d.param}')
    row = run(text, (source_id, key)).fetchone()
    return _user(row) if row else None


def users_where(source_id: int, column: str, value: str, offset: int, limit: int | None) -> list[UserRow]:
    """Users whose indexed ``column`` equals ``value``, in row order (a lookup by userName, externalId or id)."""
    if column not in LOOKUP_COLUMNS:
        raise ValueError(f"{column} is not a lookup column")
    text = written(
        ("users where", column),
        lambda d: (
            f'{_SELECT_USER} WHERE "source_id" = {d.param} AND "{column}" = {d.param} ORDER BY "id" '
            f"LIMIT {d.param} OFFSET {d.param}"
        ),
    )
    cursor = run(text, (source_id, value, limit if limit is not None else 1_000_000_000, offset))
    return [_user(row) for row in cursor.fetchall()]


def count_where(source_id: int, column: str, value: str) -> int:
    if column not in LOOKUP_COLUMNS:
        raise ValueError(f"{column} is not a lookup column")
    text = written(
        ("count where", column),
        lambda d: f'SELECT COUNT(*) FROM "identity" WHERE "source_id" = {d.param} AND "{column}" = {d.param}',
    )
    return int(run(text, (source_id, value)).fetchone()[0])


def groups_of(source_id: int, keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """(member key, group key, group displayName) of the direct memberships of these users, in group order."""
    if not keys:
        return []
    text = written(
        ("groups of", len(keys)),
        lambda d: (
            'SELECT m."member_key", g."key", g."display_name" FROM "group_member" AS m '
            'JOIN "directory_group" AS g ON m."group_id" = g."id" '
            f'WHERE m."source_id" = {d.param} AND m."member_key" IN ({d.marks(len(keys))}) ORDER BY g."id"'
        ),
    )
    return [tuple(row) for row in run(text, (source_id, *keys)).fetchall()]  # type: ignore[misc]


def reports_of(source_id: int, key: str) -> list[str | None]:
    """Match keys of the users whose enterprise ``manager`` is this user (rare: only when a manager's email
    changes)."""
    text = written(
        "reports of",
        lambda d: f'SELECT "match_key" FROM "identity" WHERE "source_id" = {d.param} AND "manager_key" = {d.param}',
    )
    return [row[0] for row in run(text, (source_id, key)).fetchall()]


def insert_user(values: dict[str, Any]) -> None:
    names = tuple(values)
    text = written(
        ("insert user", names),
        lambda d: f'INSERT INTO "identity" ({", ".join(d.quote(n) for n in names)}) VALUES ({d.marks(len(names))})',
    )
    run(text, tuple(values.values()))


def update_user(row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    """Write columns and move the version on; the number of rows changed (0: the version moved first)."""
    return _update_versioned("identity", row_id, expected, values)


def _update_versioned(table: str, row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    """``UPDATE`` a row's columns and its version, only while the version is still ``expected`` (If-Match,
    RFC 7644 §3.14) when one is given."""
    names = tuple(values)
    checked = expected is not None

    def write(d: Dialect) -> str:
        assignments = ", ".join(f"{d.quote(n)} = {d.param}" for n in names)
        text = f'UPDATE "{table}" SET "version" = "version" + 1, {assignments} WHERE "id" = {d.param}'
        return text + f' AND "version" = {d.param}' if checked else text

    params: list[Any] = [*values.values(), row_id]
    if checked:
        params.append(expected)
    return int(run(written(("update versioned", table, names, checked), write), params).rowcount)


def delete_user(source_id: int, row_id: int, key: str, expected: int | None = None) -> int:
    """Delete a user and its memberships in this source; the number of users deleted (0: the version moved)."""
    if expected is None:
        text = written("delete user", lambda d: f'DELETE FROM "identity" WHERE "id" = {d.param}')
        params: tuple[Any, ...] = (row_id,)
    else:
        text = written(
            "delete user if", lambda d: f'DELETE FROM "identity" WHERE "id" = {d.param} AND "version" = {d.param}'
        )
        params = (row_id, expected)
    deleted = int(run(text, params).rowcount)
    if deleted:
        text = written(
            "delete user memberships",
            lambda d: f'DELETE FROM "group_member" WHERE "source_id" = {d.param} AND "member_key" = {d.param}',
        )
        run(text, (source_id, key))
    return deleted


@dataclass
class GroupRow:
    """The columns of a directory group a SCIM request reads."""

    id: int
    key: str
    display_name: str
    resource: str
    version: int
    created_at: datetime
    updated_at: datetime


_SELECT_GROUP = (
    'SELECT "id", "key", "display_name", "resource", "version", "created_at", "updated_at" FROM "directory_group"'
)


def group_by_key(source_id: int, key: str) -> GroupRow | None:
    text = written("group by key", lambda d: f'{_SELECT_GROUP} WHERE "source_id" = {d.param} AND "key" = {d.param}')
    row = run(text, (source_id, key)).fetchone()
    if not row:
        return None
    return GroupRow(row[0], row[1], row[2], row[3], row[4], stored_time(row[5]), stored_time(row[6]))


def update_group(row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    return _update_versioned("directory_group", row_id, expected, values)


def present_members(group_id: int, keys: Sequence[str]) -> list[str]:
    """Which of these keys are members of the group (by the unique (group, member_key) index)."""
    return keys_in(
        "present members",
        'SELECT "member_key" FROM "group_member" WHERE "group_id" = {p} AND "member_key" IN ({marks})',
        (group_id,),
        keys,
    )


def existing_keys(table: str, source_id: int, keys: Sequence[str]) -> list[str]:
    """Which of these keys are users (``identity``) or groups (``directory_group``) of the source."""
    if table not in ("identity", "directory_group"):
        raise ValueError(table)
    return keys_in(
        f"existing {table}",
        f'SELECT "key" FROM "{table}" WHERE "source_id" = {{p}} AND "key" IN ({{marks}})',
        (source_id,),
        keys,
    )


def match_keys(source_id: int, keys: Sequence[str]) -> list[str | None]:
    return keys_in(
        "match keys",
        'SELECT "match_key" FROM "identity" WHERE "source_id" = {p} AND "key" IN ({marks})',
        (source_id,),
        keys,
    )


MemberSent = tuple[str | None, str | None, str | None]
"""What a client sent with a member besides its value: (display, $ref, type); None where it sent nothing."""
NOTHING_SENT: MemberSent = (None, None, None)
MEMBER_COLUMNS = ("org_id", "source_id", "group_id", "member_key", "member_kind", "display", "ref", "member_type")


def insert_members(
    org_id: int,
    source_id: int,
    group_id: int,
    members: Sequence[tuple[str, str]],
    sent: dict[str, MemberSent] | None = None,
) -> None:
    sent = sent or {}
    for chunk in batches(members):
        text = written(("insert members", len(chunk)), _insert_members(len(chunk)))
        params = [
            value
            for key, kind in chunk
            for value in (org_id, source_id, group_id, key, kind, *sent.get(key, NOTHING_SENT))
        ]
        run(text, params)


def _insert_members(count: int) -> Callable[[Dialect], str]:
    """``count`` member rows in one INSERT; a row already there (the unique (group, member_key) index) is left."""

    def write(d: Dialect) -> str:
        columns = ", ".join(d.quote(c) for c in MEMBER_COLUMNS)
        rows = ", ".join([f"({d.marks(len(MEMBER_COLUMNS))})"] * count)
        return f'INSERT INTO "group_member" ({columns}) VALUES {rows} ON CONFLICT DO NOTHING'

    return write


def _delete_members(count: int) -> Callable[[Dialect], str]:
    return lambda d: f'DELETE FROM "group_member" WHERE "group_id" = {d.param} AND "member_key" IN ({d.marks(count)})'


def member_sent(group_id: int) -> dict[str, MemberSent]:
    """Member key → what the client sent with it, for every member of the group."""
    text = written(
        "member sent",
        lambda d: (
            f'SELECT "member_key", "display", "ref", "member_type" FROM "group_member" WHERE "group_id" = {d.param}'
        ),
    )
    return {row[0]: (row[1], row[2], row[3]) for row in run(text, (group_id,)).fetchall()}


def update_member_sent(group_id: int, key: str, sent: MemberSent) -> None:
    text = written(
        "update member sent",
        lambda d: (
            f'UPDATE "group_member" SET "display" = {d.param}, "ref" = {d.param}, "member_type" = {d.param} '
            f'WHERE "group_id" = {d.param} AND "member_key" = {d.param}'
        ),
    )
    run(text, (*sent, group_id, key))


def delete_members(group_id: int, keys: Sequence[str]) -> None:
    for chunk in batches(keys):
        text = written(("delete members", len(chunk)), _delete_members(len(chunk)))
        run(text, (group_id, *chunk))


def delete_group(group_id: int) -> None:
    run(
        written("delete group members", lambda d: f'DELETE FROM "group_member" WHERE "group_id" = {d.param}'),
        (group_id,),
    )
    run(written("delete group", lambda d: f'DELETE FROM "directory_group" WHERE "id" = {d.param}'), (group_id,))
