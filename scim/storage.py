"""The rows of one org's SCIM source: Identity / DirectoryGroup / GroupMember, read and written (rows only).

One :class:`Rows` serves one request of one tenant (the org of the bearer token): every query is filtered by that
org's ``scim:<slug>`` source, so another org's ids are simply not found (docs/architecture.md invariant 6). The
``resource`` column keeps the SCIM resource as JSON, minus ``id``, ``meta``, read-only ``groups``, the members (rows of
their own, so one member is added or removed without rewriting the list) and the password, which is never stored.
No SCIM rule lives here: projection, preconditions, member validation and names are :mod:`scim.resources`' and its
helpers'; reconciliation is :mod:`scim.reconciliation`'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee
from scim2_models import SearchRequest
from scim2_models.path import CompareOperator, Comparison

from scim import statements
from scim.filters import GROUP_COLUMNS, USER_COLUMNS, FilterCompiler, json_keys
from scim.statements import GroupRow, MemberSent, UserRow
from scim.urns import CORE_USER_URN
from syncd.clock import utcnow
from syncd.domain.folding import fold
from syncd.store import dialect as store_dialect
from syncd.store.models import DirectoryGroup, GroupMember, Identity
from syncd.store.tx import write_transaction
from syncd.sync import source_runs

WRITE_STAMP_SECONDS = 1.0
"""How often one process records a SCIM source's last successful write (``Source.last_success_at``)."""
_stamped: dict[int, float] = {}
"""Source id -> when this process last recorded a write on it (``time.monotonic``): a throttle, not configuration."""
USER_FIELDS = (
    Identity.id,
    Identity.key,
    Identity.resource,
    Identity.version,
    Identity.created_at,
    Identity.updated_at,
    Identity.match_key,
)
LOOKUPS = {"username": "user_name_lower", "externalid": "external_id", "id": "key"}


@dataclass(frozen=True)
class Tenant:
    """Whose data a request reads and writes: one org and its SCIM source, and the actor for the ledger."""

    org_id: int
    source_id: int
    match_on: str
    actor: str


class Rows:
    """Reads and writes the SCIM rows of one tenant."""

    def __init__(self, tenant: Tenant, writing: bool = False) -> None:
        self.tenant = tenant
        self.writing = writing
        self._locked: set[tuple[type[peewee.Model], int]] = set()
        """Rows this write locked (:meth:`_lock`), so a second read of one takes no lock again."""
        self.member_defaults: dict[str, tuple[str | None, str, str]] = {}
        """Member key -> (display, $ref, type) the server shows for it, from the last :meth:`members_of`."""

    # -- transactions -------------------------------------------------------

    def operation(self) -> AbstractContextManager[None]:
        """One SCIM operation (a request, or one operation of a Bulk) is one write transaction (RFC 7644 §3.7)."""
        return self._write_operation() if self.writing else nullcontext()

    @contextmanager
    def _write_operation(self) -> Iterator[None]:
        self._locked.clear()  # a lock ends with its transaction (one operation of a Bulk)
        with write_transaction():
            yield
            self._stamp_write()

    def _stamp_write(self) -> None:
        """Record the SCIM source's last successful write, so ``syncd sources list`` and ``/metrics`` show it.

        Written in the operation's own transaction (it commits only with a write that commits), at most once a second
        per process and source: on PostgreSQL every writer would otherwise queue on the source's row lock.
        """
        source_id = self.tenant.source_id
        moment = time.monotonic()
        if moment - _stamped.get(source_id, float("-inf")) < WRITE_STAMP_SECONDS:
            return
        now = utcnow()
        source_runs.pushed(source_id, now)
        _stamped[source_id] = moment

    @staticmethod
    def may_fail() -> AbstractContextManager[Any]:
        """Around a write that may break a uniqueness constraint while the transaction goes on."""
        return store_dialect.of().may_fail()

    # -- reads ----------------------------------------------------------------

    def user(self, key: str) -> UserRow | None:
        row = statements.user_by_key(self.tenant.source_id, key)
        if row is not None and self._lock(Identity, row.id):
            row = statements.user_by_key(self.tenant.source_id, key)
        return row

    def group(self, key: str) -> GroupRow | None:
        row = statements.group_by_key(self.tenant.source_id, key)
        if row is not None and self._lock(DirectoryGroup, row.id):
            row = statements.group_by_key(self.tenant.source_id, key)
        return row

    def _lock(self, table: type[peewee.Model], row_id: int) -> bool:
        """In a write, lock the row a PUT / PATCH / DELETE read before it is modified and written back; True when the
        lock was taken now, so the row must be read again (another write may have committed while it waited).

        Without the lock, two writes without ``If-Match`` could both read version N, and the later one would find
        the version moved and answer 412, which RFC 7644 §3.14 allows only when the client asked for the
        precondition. Held, they serialise: the later one reads what the earlier wrote and applies its change to it.
        The lock is :meth:`syncd.store.dialect.Dialect.lock_row` (PostgreSQL's row lock; SQLite's write transaction
        already holds the database's write lock, so the row read is current and is not read again). Taken before the
        org lock of the ledger, as the write itself was.
        """
        if not self.writing or (table, row_id) in self._locked:
            return False
        self._locked.add((table, row_id))
        return store_dialect.of().lock_row(table, row_id)

    def groups_of(self, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The read-only ``groups`` of users (RFC 7643 §4.1.2), for a page at a time."""
        found: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
        if not keys:
            return found
        for member_key, group_key, display in statements.groups_of(self.tenant.source_id, keys):
            found[member_key].append(
                {"value": group_key, "display": display, "$ref": f"Groups/{group_key}", "type": "direct"}
            )
        return found

    def members_of(self, group_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The ``members`` of groups, each as the client sent it (RFC 7643 §4.2: read back as written), else with
        what the server knows of the member; what the server knows is kept in :attr:`member_defaults`."""
        found: dict[int, list[dict[str, Any]]] = {group_id: [] for group_id in group_ids}
        if not group_ids:
            return found
        user = Identity.alias("u")
        query = (
            GroupMember.select(
                GroupMember.group,
                GroupMember.member_key,
                GroupMember.member_kind,
                user.display_name,
                user.user_name,
                GroupMember.display,
                GroupMember.ref,
                GroupMember.member_type,
            )
            .join(
                user,
                peewee.JOIN.LEFT_OUTER,
                on=((user.source == GroupMember.source) & (user.key == GroupMember.member_key)),
            )
            .where(GroupMember.group.in_(group_ids))
            .order_by(GroupMember.id)
            .tuples()
        )
        for group_id, key, kind, display_name, user_name, sent_display, sent_ref, sent_type in query:
            shown = display_name or user_name
            self.member_defaults[key] = (shown, f"{kind}s/{key}", kind)
            entry: dict[str, Any] = {"value": key, "type": sent_type or kind, "$ref": sent_ref or f"{kind}s/{key}"}
            if sent_display or shown:
                entry["display"] = sent_display or shown
            found[group_id].append(entry)
        return found

    def member_keys(self, row: GroupRow) -> list[str]:
        return [k for (k,) in GroupMember.select(GroupMember.member_key).where(GroupMember.group == row.id).tuples()]

    def member_kinds(self, values: list[str]) -> dict[str, str]:
        """Which of ``values`` are keys of this tenant's Users or Groups: key -> "User" / "Group"."""
        source = self.tenant.source_id
        kinds = dict.fromkeys(statements.existing_keys("identity", source, values), "User")
        missing = [v for v in values if v not in kinds]
        if missing:
            kinds.update(dict.fromkeys(statements.existing_keys("directory_group", source, missing), "Group"))
        return kinds

    def present_members(self, row: GroupRow, values: list[str]) -> list[str]:
        return statements.present_members(row.id, values)

    def member_sent(self, row: GroupRow) -> dict[str, MemberSent]:
        return statements.member_sent(row.id)

    def match_keys(self, member_keys: Iterable[str]) -> list[str | None]:
        """The match keys of these members (users; a group member has none)."""
        return statements.match_keys(self.tenant.source_id, sorted(set(member_keys)))

    def reports_of(self, key: str) -> list[str | None]:
        """Match keys of the users whose enterprise ``manager`` is this user."""
        return statements.reports_of(self.tenant.source_id, key)

    def search(
        self, is_group: bool, model: type[Any], search_request: SearchRequest[Any]
    ) -> tuple[int, list[UserRow] | list[DirectoryGroup]]:
        """(total, rows of the page) of one resource type: filter, sortBy/sortOrder, startIndex/count."""
        lookup = None if is_group or search_request.sort_by else _lookup(search_request)
        if lookup is not None:
            return self._lookup_page(search_request, *lookup)
        table = DirectoryGroup if is_group else Identity
        condition = table.source == self.tenant.source_id
        if search_request.filter is not None:
            compiler = FilterCompiler(model, is_group, self.tenant.source_id)
            condition = condition & compiler.compile(search_request.filter.ast)
        query = (DirectoryGroup.select() if is_group else Identity.select(*USER_FIELDS)).where(condition)
        count = search_request.count
        if count == 0:
            return query.count(), []
        offset = max((search_request.start_index or 1) - 1, 0)
        rows = list(query.order_by(*_order(table, model, search_request, is_group)).offset(offset).limit(count))
        # A short first page is the whole result (a lookup by userName): no COUNT needed.
        total = len(rows) if offset == 0 and (count is None or len(rows) < count) else query.count()
        return total, rows

    def _lookup_page(self, search_request: SearchRequest[Any], column: str, value: str) -> tuple[int, list[UserRow]]:
        offset = max((search_request.start_index or 1) - 1, 0)
        return self.users_where(column, value, offset, search_request.count)

    def users_where(self, column: str, value: str, offset: int, count: int | None) -> tuple[int, list[UserRow]]:
        """(total, page) of the users whose indexed ``column`` (userName folded, externalId or id) is ``value``: one
        indexed statement, what IdPs send most; a short first page is the whole result, so no COUNT."""
        source = self.tenant.source_id
        if count == 0:
            return statements.count_where(source, column, value), []
        rows = statements.users_where(source, column, value, offset, count)
        if offset == 0 and (count is None or len(rows) < count):
            return len(rows), rows
        return statements.count_where(source, column, value), rows

    # -- writes -----------------------------------------------------------------

    def insert_user(self, key: str, columns: dict[str, Any], now: datetime) -> None:
        values = {"org_id": self.tenant.org_id, "source_id": self.tenant.source_id, "key": key, **columns}
        statements.insert_user({**values, "version": 1, "created_at": now, "updated_at": now})

    def update_user(self, row: UserRow, expected: int | None, columns: dict[str, Any], now: datetime) -> int:
        """Write the columns and move the version on; rows changed (0: the version was no longer ``expected``)."""
        changed = statements.update_user(row.id, expected, {**columns, "updated_at": now})
        if changed:
            row.version += 1
            row.updated_at = now
        return changed

    def delete_user(self, row: UserRow, expected: int | None) -> int:
        return statements.delete_user(self.tenant.source_id, row.id, row.key, expected)

    def insert_group(self, key: str, columns: dict[str, Any], now: datetime) -> GroupRow:
        created = DirectoryGroup.create(
            org=self.tenant.org_id,
            source=self.tenant.source_id,
            key=key,
            created_at=now,
            updated_at=now,
            **columns,
        )
        return GroupRow(created.id, key, columns["display_name"], columns["resource"], 1, now, now)

    def update_group(self, row: GroupRow, expected: int | None, columns: dict[str, Any]) -> int:
        """Write the columns and move the version on; rows changed (0: the version was no longer ``expected``)."""
        now = utcnow()
        changed = statements.update_group(row.id, expected, {**columns, "updated_at": now})
        if changed:
            row.version += 1
            row.updated_at = now
        return changed

    def delete_group(self, row: GroupRow) -> None:
        statements.delete_group(row.id)

    def insert_members(
        self, row: GroupRow, members: list[tuple[str, str]], sent: dict[str, MemberSent] | None = None
    ) -> None:
        statements.insert_members(self.tenant.org_id, self.tenant.source_id, row.id, members, sent)

    def delete_members(self, row: GroupRow, keys: list[str]) -> None:
        statements.delete_members(row.id, keys)

    def update_member_sent(self, row: GroupRow, key: str, sent: MemberSent) -> None:
        statements.update_member_sent(row.id, key, sent)


def _order(
    table: type[peewee.Model], model: type[Any], search_request: SearchRequest[Any], is_group: bool
) -> list[Any]:
    """sortBy/sortOrder (RFC 7644 §3.4.2.3), then the id: a stable order for startIndex paging, in the index."""
    if search_request.sort_by is None:
        return [table.key]
    binding = search_request.sort_binding(model)
    if binding is None:
        return [table.key]
    dialect = store_dialect.of()
    columns = GROUP_COLUMNS if is_group else USER_COLUMNS
    column = columns.get(binding.urn.lower())
    if column is not None:
        node = column.node
        if column.text and not column.folded and not binding.case_exact:
            node = dialect.fold(node)
    else:
        keys: list[str | int] = list(json_keys(binding))
        if binding.is_multivalued:
            # A multi-valued attribute sorts by its first value: the path gains the array position 0.
            head = len(keys) - 1 if binding.sub_field_name else len(keys)
            keys = [*keys[:head], 0, *keys[head:]]
        node = dialect.json_value(table.resource, keys)
        if not binding.case_exact:
            node = dialect.fold(node)
    node = dialect.text(node) if column is None or column.text else node
    descending = search_request.sort_order == SearchRequest.SortOrder.descending
    if descending:
        return [node.is_null().desc(), node.desc(), table.key.desc()]
    return [node.is_null().asc(), node.asc(), table.key.asc()]


def _lookup(search_request: SearchRequest[Any]) -> tuple[str, str] | None:
    """(column, value) when the filter is ``userName``, ``externalId`` or ``id`` eq a string, else None."""
    if search_request.filter is None:
        return None
    node = search_request.filter.ast
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq or not isinstance(node.value, str):
        return None
    path = node.attr_path
    if path.sub_attr is not None or (path.uri is not None and path.uri.lower() != CORE_USER_URN.lower()):
        return None
    column = LOOKUPS.get(path.attr.lower())
    if column is None:
        return None
    return column, (fold(node.value) or "") if column == "user_name_lower" else node.value
