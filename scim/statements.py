"""Hand-written SQL for the statements every SCIM request runs, on both backends.

peewee spends about 0.2 ms building the text of even a one-row SELECT; the database answers it in a few
microseconds. The statements of the hot paths (a user by id, a lookup by userName / externalId / id, a user's
groups, creating, updating and deleting a user) are therefore written once here, with the driver's placeholder,
and executed directly. Everything else (filters, sorting, groups) stays peewee. Same tables, same semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from syncd.store.db import database
from syncd.store.dialect import stored_time

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


def _db() -> peewee.Database:
    return database.obj


def _p() -> str:
    return str(_db().param)


_SELECT_USER = 'SELECT "id", "key", "resource", "version", "created_at", "updated_at", "match_key" FROM "identity"'


def user_by_key(source_id: int, key: str) -> UserRow | None:
    p = _p()
    row = _db().execute_sql(f'{_SELECT_USER} WHERE "source_id" = {p} AND "key" = {p}', (source_id, key)).fetchone()
    return _user(row) if row else None


def users_where(source_id: int, column: str, value: str, offset: int, limit: int | None) -> list[UserRow]:
    """Users whose indexed ``column`` equals ``value``, in row order (a lookup by userName, externalId or id)."""
    if column not in LOOKUP_COLUMNS:
        raise ValueError(f"{column} is not a lookup column")
    p = _p()
    sql = f'{_SELECT_USER} WHERE "source_id" = {p} AND "{column}" = {p} ORDER BY "id" LIMIT {p} OFFSET {p}'
    cursor = _db().execute_sql(sql, (source_id, value, limit if limit is not None else 1_000_000_000, offset))
    return [_user(row) for row in cursor.fetchall()]


def count_where(source_id: int, column: str, value: str) -> int:
    if column not in LOOKUP_COLUMNS:
        raise ValueError(f"{column} is not a lookup column")
    p = _p()
    sql = f'SELECT COUNT(*) FROM "identity" WHERE "source_id" = {p} AND "{column}" = {p}'
    return int(_db().execute_sql(sql, (source_id, value)).fetchone()[0])


def groups_of(source_id: int, keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """(member key, group key, group displayName) of the direct memberships of these users, in group order."""
    if not keys:
        return []
    p = _p()
    marks = ", ".join([p] * len(keys))
    sql = (
        'SELECT m."member_key", g."key", g."display_name" FROM "group_member" AS m '
        'JOIN "directory_group" AS g ON m."group_id" = g."id" '
        f'WHERE m."source_id" = {p} AND m."member_key" IN ({marks}) ORDER BY g."id"'
    )
    return [tuple(row) for row in _db().execute_sql(sql, (source_id, *keys)).fetchall()]  # type: ignore[misc]


def reports_of(source_id: int, key: str) -> list[str | None]:
    """Match keys of the users whose enterprise ``manager`` is this user (rare: only when a manager's email
    changes)."""
    p = _p()
    sql = f'SELECT "match_key" FROM "identity" WHERE "source_id" = {p} AND "manager_key" = {p}'
    return [row[0] for row in _db().execute_sql(sql, (source_id, key)).fetchall()]


def insert_user(values: dict[str, Any]) -> None:
    p = _p()
    columns = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join([p] * len(values))
    _db().execute_sql(f'INSERT INTO "identity" ({columns}) VALUES ({marks})', tuple(values.values()))


def update_user(row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    """Write columns and move the version on; the number of rows changed (0: the version moved first)."""
    return _update_versioned("identity", row_id, expected, values)


def _update_versioned(table: str, row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    """``UPDATE`` a row's columns and its version, only while the version is still ``expected`` (If-Match,
    RFC 7644 §3.14) when one is given."""
    p = _p()
    assignments = ", ".join(f'"{name}" = {p}' for name in values)
    sql = f'UPDATE "{table}" SET "version" = "version" + 1, {assignments} WHERE "id" = {p}'
    params: list[Any] = [*values.values(), row_id]
    if expected is not None:
        sql += f' AND "version" = {p}'
        params.append(expected)
    return int(_db().execute_sql(sql, tuple(params)).rowcount)


def delete_user(source_id: int, row_id: int, key: str, expected: int | None = None) -> int:
    """Delete a user and its memberships in this source; the number of users deleted (0: the version moved)."""
    p = _p()
    sql = f'DELETE FROM "identity" WHERE "id" = {p}'
    params: tuple[Any, ...] = (row_id,)
    if expected is not None:
        sql += f' AND "version" = {p}'
        params = (row_id, expected)
    deleted = int(_db().execute_sql(sql, params).rowcount)
    if deleted:
        _db().execute_sql(
            f'DELETE FROM "group_member" WHERE "source_id" = {p} AND "member_key" = {p}', (source_id, key)
        )
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
    p = _p()
    row = _db().execute_sql(f'{_SELECT_GROUP} WHERE "source_id" = {p} AND "key" = {p}', (source_id, key)).fetchone()
    if not row:
        return None
    return GroupRow(row[0], row[1], row[2], row[3], row[4], stored_time(row[5]), stored_time(row[6]))


def update_group(row_id: int, expected: int | None, values: dict[str, Any]) -> int:
    return _update_versioned("directory_group", row_id, expected, values)


def _keys_in(sql_head: str, head_params: tuple[Any, ...], keys: Sequence[str]) -> list[Any]:
    found: list[Any] = []
    p = _p()
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        marks = ", ".join([p] * len(chunk))
        cursor = _db().execute_sql(sql_head.format(marks=marks), (*head_params, *chunk))
        found.extend(row[0] for row in cursor.fetchall())
    return found


def present_members(group_id: int, keys: Sequence[str]) -> list[str]:
    """Which of these keys are members of the group (by the unique (group, member_key) index)."""
    p = _p()
    return _keys_in(
        f'SELECT "member_key" FROM "group_member" WHERE "group_id" = {p} AND "member_key" IN ({{marks}})',
        (group_id,),
        keys,
    )


def existing_keys(table: str, source_id: int, keys: Sequence[str]) -> list[str]:
    """Which of these keys are users (``identity``) or groups (``directory_group``) of the source."""
    if table not in ("identity", "directory_group"):
        raise ValueError(table)
    p = _p()
    return _keys_in(f'SELECT "key" FROM "{table}" WHERE "source_id" = {p} AND "key" IN ({{marks}})', (source_id,), keys)


def match_keys(source_id: int, keys: Sequence[str]) -> list[str | None]:
    p = _p()
    return _keys_in(
        f'SELECT "match_key" FROM "identity" WHERE "source_id" = {p} AND "key" IN ({{marks}})', (source_id,), keys
    )


MemberSent = tuple[str | None, str | None, str | None]
"""What a client sent with a member besides its value: (display, $ref, type); None where it sent nothing."""
NOTHING_SENT: MemberSent = (None, None, None)


def insert_members(
    org_id: int,
    source_id: int,
    group_id: int,
    members: Sequence[tuple[str, str]],
    sent: dict[str, MemberSent] | None = None,
) -> None:
    p = _p()
    sent = sent or {}
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        rows = ", ".join([f"({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"] * len(chunk))
        params = [
            value
            for key, kind in chunk
            for value in (org_id, source_id, group_id, key, kind, *sent.get(key, NOTHING_SENT))
        ]
        _db().execute_sql(
            'INSERT INTO "group_member" ("org_id", "source_id", "group_id", "member_key", "member_kind", '
            f'"display", "ref", "member_type") VALUES {rows} ON CONFLICT DO NOTHING',
            tuple(params),
        )


def member_sent(group_id: int) -> dict[str, MemberSent]:
    """Member key → what the client sent with it, for every member of the group."""
    p = _p()
    sql = f'SELECT "member_key", "display", "ref", "member_type" FROM "group_member" WHERE "group_id" = {p}'
    return {row[0]: (row[1], row[2], row[3]) for row in _db().execute_sql(sql, (group_id,)).fetchall()}


def update_member_sent(group_id: int, key: str, sent: MemberSent) -> None:
    p = _p()
    _db().execute_sql(
        f'UPDATE "group_member" SET "display" = {p}, "ref" = {p}, "member_type" = {p} '
        f'WHERE "group_id" = {p} AND "member_key" = {p}',
        (*sent, group_id, key),
    )


def delete_members(group_id: int, keys: Sequence[str]) -> None:
    p = _p()
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        marks = ", ".join([p] * len(chunk))
        _db().execute_sql(
            f'DELETE FROM "group_member" WHERE "group_id" = {p} AND "member_key" IN ({marks})', (group_id, *chunk)
        )


def delete_group(group_id: int) -> None:
    p = _p()
    _db().execute_sql(f'DELETE FROM "group_member" WHERE "group_id" = {p}', (group_id,))
    _db().execute_sql(f'DELETE FROM "directory_group" WHERE "id" = {p}', (group_id,))
