"""The peewee storage behind scim2-server: the SCIM source of one org, as Identity / DirectoryGroup / GroupMember rows.

One storage serves one request of one tenant (the org of the bearer token): every query is filtered by that org's
``scim:<slug>`` source, so another org's ids are simply not found (docs/architecture.md invariant 6). The ``resource``
column keeps the SCIM resource as JSON, minus ``id``, ``meta``, read-only ``groups``, the members (rows of their own,
so one member is added or removed without rewriting the list) and the password, which is never stored (RFC 7643 §4.1.1:
"the cleartext value ... SHALL NOT be returned"; we have no use for it at all).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import peewee
from scim2_models import (
    Group,
    InvalidValueException,
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison
from scim2_server.storage import ScimStorage, SearchPage

from scim import reconciliation, statements
from scim.filters import GROUP_COLUMNS, USER_COLUMNS, FilterCompiler, json_keys
from scim.schema import ENTERPRISE_URN, GROUP_TYPE
from syncd.clock import utcnow
from syncd.config import Config
from syncd.domain.folding import fold
from syncd.domain.matching import match_key
from syncd.logs import log_event
from syncd.store import dialect as store_dialect
from syncd.store.limits import first_problem
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Source
from syncd.store.tx import write_transaction

log = logging.getLogger("syncd.scim")
NOT_STORED = ("id", "meta", "password", "groups", "members")
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


@dataclass(frozen=True)
class Tenant:
    """Whose data a request reads and writes: one org and its SCIM source, and the actor for the ledger."""

    org_id: int
    source_id: int
    match_on: str
    actor: str


def version_tag(version: int) -> str:
    """A weak ETag (RFC 7644 §3.14) from the row's version counter."""
    return f'W/"{version}"'


def version_number(tag: str | None) -> int | None:
    if tag is None:
        return None
    text = tag.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isdigit() else -1


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def wants(parameters: ResponseParameters[Any] | None, attribute: str) -> bool:
    """Whether a response keeps ``attribute`` (RFC 7644 §3.9), so that excluded members are never loaded."""
    if parameters is None:
        return True
    name = attribute.lower()

    def names(paths: Iterable[Any] | None) -> set[str]:
        return {str(path.parts[0]).lower() for path in paths or () if path.parts}

    if parameters.excluded_attributes and name in names(parameters.excluded_attributes):
        return False
    return not (parameters.attributes and name not in names(parameters.attributes))


def _primary_email(data: dict[str, Any]) -> str | None:
    emails = [e for e in data.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    if not emails:
        return None
    chosen = next((e for e in emails if e.get("primary")), None) or next(
        (e for e in emails if e.get("type") == "work"), emails[0]
    )
    return str(chosen["value"])


class SyncdStorage(ScimStorage):
    """Reads and writes the SCIM source of one tenant; no protocol rule lives here."""

    def __init__(
        self,
        tenant: Tenant,
        models: dict[str, type[Resource[Any]]],
        writing: bool = False,
        config: Config | None = None,
    ) -> None:
        self.tenant = tenant
        self.config = config or Config()
        self.models = models
        self.writing = writing
        self._read: dict[str, tuple[statements.UserRow, list[dict[str, Any]]]] = {}
        self._member_defaults: dict[str, tuple[str | None, str, str]] = {}

    # -- transactions -------------------------------------------------------

    def operation(self) -> AbstractContextManager[None]:
        """One SCIM operation (a request, or one operation of a Bulk) is one write transaction (RFC 7644 §3.7)."""
        return self._write_operation() if self.writing else nullcontext()

    @contextmanager
    def _write_operation(self) -> Iterator[None]:
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
        Source.update(last_success_at=now, last_run_at=now).where(Source.id == source_id).execute()
        _stamped[source_id] = moment

    # -- helpers ------------------------------------------------------------

    def is_group(self, resource_type: ResourceType) -> bool:
        return resource_type.name == GROUP_TYPE.name

    def _model(self, resource_type: ResourceType) -> type[Resource[Any]]:
        return self.models[str(resource_type.name)]

    def user_row(self, key: str) -> statements.UserRow:
        row = statements.user_by_key(self.tenant.source_id, key)
        if row is None:
            raise NotFoundException(detail=f"User {key!r} not found")
        return row

    def group_row(self, key: str) -> statements.GroupRow:
        row = statements.group_by_key(self.tenant.source_id, key)
        if row is None:
            raise NotFoundException(detail=f"Group {key!r} not found")
        return row

    def _meta(self, name: str, row: Identity | DirectoryGroup) -> Meta:
        return Meta(
            resource_type=name,
            created=_aware(row.created_at),
            last_modified=_aware(row.updated_at),
            version=version_tag(row.version),
        )

    def _load(
        self, resource_type: ResourceType, row: Identity | DirectoryGroup, extra: dict[str, Any]
    ) -> Resource[Any]:
        data = json.loads(row.resource)
        data.update(extra)
        data["id"] = row.key
        resource = self._model(resource_type).model_validate(data)
        resource.meta = self._meta(str(resource_type.name), row)
        return resource

    @staticmethod
    def _dump(resource: Resource[Any]) -> dict[str, Any]:
        data = resource.model_dump()
        for key in NOT_STORED:
            data.pop(key, None)
        return data

    def _groups_of(self, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The read-only ``groups`` of users (RFC 7643 §4.1.2), for a page at a time."""
        found: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
        if not keys:
            return found
        query = statements.groups_of(self.tenant.source_id, keys)
        for member_key, group_key, display in query:
            found[member_key].append(
                {"value": group_key, "display": display, "$ref": f"Groups/{group_key}", "type": "direct"}
            )
        return found

    def _members_of(self, group_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
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
            # What the client sent wins (RFC 7643 §4.2: read back as written); else what the server knows.
            shown = display_name or user_name
            self._member_defaults[key] = (shown, f"{kind}s/{key}", kind)
            entry: dict[str, Any] = {"value": key, "type": sent_type or kind, "$ref": sent_ref or f"{kind}s/{key}"}
            if sent_display or shown:
                entry["display"] = sent_display or shown
            found[group_id].append(entry)
        return found

    def member_sent(self, members: Iterable[Any] | None) -> dict[str, statements.MemberSent]:
        """What the client sent with each member (display, $ref, type), leaving out what only echoes the server's
        own defaults (a PATCH that the library applies to the read group hands every member back with them)."""
        sent: dict[str, statements.MemberSent] = {}
        for member in members or ():
            if member is None or not member.value:
                continue
            default = self._member_defaults.get(member.value, (None, None, None))
            ref = str(member.ref) if member.ref is not None else None
            display = member.display if member.display != default[0] else None
            sent[member.value] = (
                display,
                ref if ref != default[1] else None,
                member.type if member.type != default[2] else None,
            )
        return sent

    def _reconcile(self, keys: Iterable[str | None]) -> None:
        reconciliation.touched(self.config, self.tenant.org_id, keys, self.tenant.actor)

    def _unmatched(self, key: str, columns: dict[str, Any]) -> None:
        """Log, once (when it becomes unmatched), a user stored without the org's match key: it joins no member.
        It is also a note of ``syncd plan``, a metric and a line of ``syncd sources show``."""
        log_event(
            log,
            "identity.unmatched",
            logging.WARNING,
            org_id=self.tenant.org_id,
            source_id=self.tenant.source_id,
            id=key,
            user_name=columns["user_name"],
            match_on=self.tenant.match_on,
            effect="joins no member until it has one",
        )

    def _member_match_keys(self, member_keys: Iterable[str]) -> list[str | None]:
        return statements.match_keys(self.tenant.source_id, sorted(set(member_keys)))

    # -- ScimStorage ----------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        if self.is_group(resource_type):
            row = self.group_row(resource_id)
            extra = {}
            if wants(response_parameters, "members"):
                extra["members"] = self._members_of([row.id])[row.id]
            return self._load(resource_type, row, extra)
        user = self.user_row(resource_id)
        extra = {"groups": self._groups_of([user.key])[user.key]} if wants(response_parameters, "groups") else {}
        if "groups" in extra:
            self._read[user.key] = (user, extra["groups"])
        return self._load(resource_type, user, extra)

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        if len(resource_types) != 1:
            return self._search_root(resource_types, search_request)
        return self._search_one(resource_types[0], search_request)

    def _search_root(self, resource_types: list[ResourceType], search_request: SearchRequest[Any]) -> SearchPage:
        """A search at the root (RFC 7644 §3.4.2.1, §3.4.3): every type's matches, Users before Groups, each in id
        order, paged by ``startIndex`` / ``count`` across the whole list. A filter attribute a type does not have
        matches none of its resources (the compiler reads it as false). ``sortBy`` across types is refused: the
        types share no sort key we could index."""
        if search_request.sort_by:
            raise InvalidValueException(detail="sortBy is not supported at the root; search /Users or /Groups to sort")
        ordered = sorted(resource_types, key=lambda rt: self.is_group(rt))
        start = max((search_request.start_index or 1) - 1, 0)
        remaining = search_request.count
        total = 0
        resources: list[Resource[Any]] = []
        for resource_type in ordered:
            found = self._search_one(resource_type, search_request.model_copy(update={"count": 0})).total or 0
            if (remaining is None or remaining > 0) and start < found:
                page = self._search_one(
                    resource_type, search_request.model_copy(update={"start_index": start + 1, "count": remaining})
                )
                resources += page.resources
                if remaining is not None:
                    remaining -= len(page.resources)
            start = max(start - found, 0)
            total += found
        return SearchPage(total, resources)

    def _search_one(self, resource_type: ResourceType, search_request: SearchRequest[Any]) -> SearchPage:
        is_group = self.is_group(resource_type)
        lookup = None if is_group or search_request.sort_by else _lookup(search_request)
        if lookup is not None:
            return self._lookup_page(resource_type, search_request, *lookup)
        table = DirectoryGroup if is_group else Identity
        model = self._model(resource_type)
        condition = table.source == self.tenant.source_id
        if search_request.filter is not None:
            compiler = FilterCompiler(model, is_group, self.tenant.source_id)
            condition = condition & compiler.compile(search_request.filter.ast)
        query = (DirectoryGroup.select() if is_group else Identity.select(*USER_FIELDS)).where(condition)
        count = search_request.count
        if count == 0:
            return SearchPage(query.count(), [])
        offset = max((search_request.start_index or 1) - 1, 0)
        rows = list(query.order_by(*self._order(table, model, search_request, is_group)).offset(offset).limit(count))
        # A short first page is the whole result (a lookup by userName): no COUNT needed.
        total = len(rows) if offset == 0 and (count is None or len(rows) < count) else query.count()
        if is_group:
            members = self._members_of([r.id for r in rows]) if wants(search_request, "members") else {}
            resources = [
                self._load(resource_type, r, {"members": members[r.id]} if r.id in members else {}) for r in rows
            ]
        else:
            groups = self._groups_of([r.key for r in rows]) if wants(search_request, "groups") else {}
            resources = [
                self._load(resource_type, r, {"groups": groups[r.key]} if r.key in groups else {}) for r in rows
            ]
        return SearchPage(total, resources)

    def _lookup_page(
        self, resource_type: ResourceType, search_request: SearchRequest[Any], column: str, value: str
    ) -> SearchPage:
        """``userName`` / ``externalId`` / ``id`` eq a value: one indexed statement (what IdPs send most)."""
        source = self.tenant.source_id
        count = search_request.count
        offset = max((search_request.start_index or 1) - 1, 0)
        if count == 0:
            return SearchPage(statements.count_where(source, column, value), [])
        rows = statements.users_where(source, column, value, offset, count)
        total = len(rows) if offset == 0 and (count is None or len(rows) < count) else None
        if total is None:
            total = statements.count_where(source, column, value)
        groups = self._groups_of([r.key for r in rows]) if wants(search_request, "groups") else {}
        return SearchPage(
            total, [self._load(resource_type, r, {"groups": groups[r.key]} if r.key in groups else {}) for r in rows]
        )

    def _order(
        self, table: type[peewee.Model], model: type[Any], search_request: SearchRequest[Any], is_group: bool
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

    # -- writes -----------------------------------------------------------------

    def _user_columns(self, data: dict[str, Any]) -> dict[str, Any]:
        name = data.get("name") or {}
        enterprise = data.get(ENTERPRISE_URN) or {}
        manager = enterprise.get("manager") or {}
        user_name = str(data.get("userName") or "")
        email = _primary_email(data)
        external_id = data.get("externalId")
        _refuse_identifiers({"userName": user_name, "externalId": external_id, "emails.value": email})
        return {
            "user_name": user_name,
            "user_name_lower": fold(user_name),
            "unique_name": fold(user_name),
            "email": email,
            "email_lower": fold(email),
            "external_id": external_id,
            "display_name": _person_name(data, name),
            "given_name": name.get("givenName"),
            "family_name": name.get("familyName"),
            "active": data.get("active") is not False,
            "department": enterprise.get("department"),
            "title": data.get("title"),
            "employee_number": enterprise.get("employeeNumber"),
            "manager_key": manager.get("value"),
            "match_key": match_key(self.tenant.match_on, user_name=user_name, email=email, external_id=external_id),
            "resource": json.dumps(data, separators=(",", ":"), default=str),
        }

    @staticmethod
    def _group_columns(data: dict[str, Any]) -> dict[str, Any]:
        display_name = str(data.get("displayName") or "")
        _refuse_identifiers({"displayName": display_name, "externalId": data.get("externalId")})
        return {
            "display_name": display_name,
            "display_name_lower": fold(display_name),
            "unique_name": fold(display_name),
            "external_id": data.get("externalId"),
            "resource": json.dumps(data, separators=(",", ":"), default=str),
        }

    @contextmanager
    def _unique(self, what: str) -> Iterator[None]:
        """A uniqueness violation answers 409 and the transaction goes on.

        PostgreSQL aborts the whole transaction on a failed statement, so the write gets a savepoint there; SQLite
        undoes only the failed statement (https://www.sqlite.org/lang_conflict.html, ABORT), so it needs none.
        """
        try:
            with store_dialect.of().may_fail():
                yield
        except peewee.IntegrityError:
            raise UniquenessException(detail=f"{what} is already taken in this organization") from None

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        now = utcnow()
        key = _new_id()
        data = self._dump(resource)
        if self.is_group(resource_type):
            columns = self._group_columns(data)
            members = self._member_entries(cast(Group, resource).members)
            sent = self.member_sent(cast(Group, resource).members)
            with self._unique("displayName"):
                row = DirectoryGroup.create(
                    org=self.tenant.org_id,
                    source=self.tenant.source_id,
                    key=key,
                    created_at=now,
                    updated_at=now,
                    **columns,
                )
            self._insert_members(row, members, sent)
            self._reconcile(self._member_match_keys(k for k, _ in members))
            return self.get(resource_type, key)
        columns = self._user_columns(data)
        values = {"org_id": self.tenant.org_id, "source_id": self.tenant.source_id, "key": key, **columns}
        with self._unique("userName"):
            statements.insert_user({**values, "version": 1, "created_at": now, "updated_at": now})
        if columns["match_key"] is None:
            self._unmatched(key, columns)
        self._reconcile([columns["match_key"]])
        return self._stored(resource_type, resource, key, now, now, 1, [])

    def update(
        self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None
    ) -> Resource[Any]:
        key = cast(str, resource.id)
        data = self._dump(resource)
        if self.is_group(resource_type):
            row = self.group_row(key)
            columns = self._group_columns(data)
            with self._unique("displayName"):
                self.bump(row, expected_version, **columns)
            members = cast(Group, resource).members
            touched = self.set_members(row, self._member_entries(members), self.member_sent(members))
            if columns["display_name"] != row.display_name:
                touched = touched + self.member_keys(row)
            self._reconcile(self._member_match_keys(touched))
            return self.get(resource_type, key)
        # PUT and PATCH read the user first, in this same transaction: reuse that read.
        user, groups = self._read.pop(key, None) or (self.user_row(key), self._groups_of([key])[key])
        columns = self._user_columns(data)
        now = utcnow()
        with self._unique("userName"):
            if statements.update_user(user.id, version_number(expected_version), {**columns, "updated_at": now}) == 0:
                raise PreconditionFailedException(detail="the resource changed since it was read; read it again")
        user.version += 1
        user.updated_at = now
        if columns["match_key"] is None and user.match_key is not None:
            self._unmatched(key, columns)
        touched = [user.match_key, columns["match_key"]]
        if columns["email"] != _primary_email(json.loads(user.resource)):
            # The people this user manages show the manager's email: re-plan them too.
            touched += statements.reports_of(self.tenant.source_id, key)
        self._reconcile(touched)
        return self._stored(resource_type, resource, key, user.created_at, user.updated_at, user.version, groups)

    def _stored(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        key: str,
        created: datetime,
        updated: datetime,
        version: int,
        groups: list[dict[str, Any]],
    ) -> Resource[Any]:
        """The user as a read would return it, without reading it back: the row holds exactly what was written."""
        meta = Meta(
            resource_type=str(resource_type.name),
            created=_aware(created),
            last_modified=_aware(updated),
            version=version_tag(version),
        )
        if not groups:
            return resource.model_copy(update={"id": key, "meta": meta, "password": None, "groups": None})
        data = self._dump(resource)
        data["groups"] = groups
        data["id"] = key
        stored = self._model(resource_type).model_validate(data)
        stored.meta = meta
        return stored

    def bump(self, row: statements.GroupRow, expected_version: str | None, **columns: Any) -> int:
        """Write a group's columns and move its version on, unless another write moved it first (RFC 7644 §3.14)."""
        now = utcnow()
        if statements.update_group(row.id, version_number(expected_version), {**columns, "updated_at": now}) == 0:
            raise PreconditionFailedException(detail="the resource changed since it was read; read it again")
        row.version = row.version + 1
        row.updated_at = now
        return row.version

    def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        expected = version_number(expected_version)
        if self.is_group(resource_type):
            row = self.group_row(resource_id)
            if expected is not None and row.version != expected:
                raise PreconditionFailedException(detail="the resource changed since it was read; read it again")
            keys = self.member_keys(row)
            statements.delete_group(row.id)
            self._reconcile(self._member_match_keys(keys))
            return
        cached = self._read.pop(resource_id, None)  # DELETE reads the user first, in this transaction
        user = cached[0] if cached else self.user_row(resource_id)
        if expected is not None and user.version != expected:
            raise PreconditionFailedException(detail="the resource changed since it was read; read it again")
        if statements.delete_user(self.tenant.source_id, user.id, user.key, expected) == 0:
            raise PreconditionFailedException(detail="the resource changed since it was read; read it again")
        self._reconcile([user.match_key])

    # -- members -----------------------------------------------------------------

    def _member_entries(self, members: Iterable[Any] | None) -> list[tuple[str, str]]:
        """(key, kind) of each member, checked to be a User or Group of this tenant (RFC 7643 §4.2)."""
        values = list(dict.fromkeys(m.value for m in members or () if m is not None and m.value))
        return self.resolve_members(values)

    def resolve_members(self, values: list[str]) -> list[tuple[str, str]]:
        kinds = dict.fromkeys(statements.existing_keys("identity", self.tenant.source_id, values), "User")
        missing = [v for v in values if v not in kinds]
        if missing:
            kinds.update(
                dict.fromkeys(statements.existing_keys("directory_group", self.tenant.source_id, missing), "Group")
            )
        unknown = [v for v in values if v not in kinds]
        if unknown:
            raise InvalidValueException(
                detail=f"member {unknown[0]!r} is not a User or Group of this organization; create it first"
            )
        return [(v, kinds[v]) for v in values]

    def member_keys(self, row: statements.GroupRow) -> list[str]:
        return [k for (k,) in GroupMember.select(GroupMember.member_key).where(GroupMember.group == row.id).tuples()]

    def _insert_members(
        self,
        row: statements.GroupRow,
        members: list[tuple[str, str]],
        sent: dict[str, statements.MemberSent] | None = None,
    ) -> None:
        statements.insert_members(self.tenant.org_id, self.tenant.source_id, row.id, members, sent)

    def add_members(
        self, row: statements.GroupRow, values: list[str], sent: dict[str, statements.MemberSent] | None = None
    ) -> list[str]:
        """Insert the members not there yet; return the keys added. Costs O(added), whatever the group size."""
        if not values:
            return []
        present = set(statements.present_members(row.id, values))
        new = self.resolve_members([v for v in dict.fromkeys(values) if v not in present])
        self._insert_members(row, new, sent)
        return [k for k, _ in new]

    def remove_members(self, row: statements.GroupRow, values: list[str]) -> list[str]:
        """Delete exactly the listed members; return the keys removed."""
        if not values:
            return []
        present = statements.present_members(row.id, values)
        if present:
            statements.delete_members(row.id, present)
        return present

    def set_members(
        self,
        row: statements.GroupRow,
        members: list[tuple[str, str]],
        sent: dict[str, statements.MemberSent] | None = None,
    ) -> list[str]:
        """Make the member list exactly ``members`` (with what the client sent of each); return the keys added,
        removed or restated with other attributes (so the group's version moves, RFC 7644 §3.14)."""
        sent = sent or {}
        stored = statements.member_sent(row.id)
        wanted = {k for k, _ in members}
        removed = sorted(set(stored) - wanted)
        statements.delete_members(row.id, removed)
        added = [(k, kind) for k, kind in members if k not in stored]
        self._insert_members(row, added, sent)
        restated = []
        for key, _ in members:
            if key in stored and stored[key] != sent.get(key, statements.NOTHING_SENT):
                statements.update_member_sent(row.id, key, sent.get(key, statements.NOTHING_SENT))
                restated.append(key)
        return removed + [k for k, _ in added] + restated


def _refuse_identifiers(values: dict[str, Any]) -> None:
    """400 naming the attribute the store cannot index (syncd.store.limits), alike on SQLite and PostgreSQL."""
    problem = first_problem((k, v if isinstance(v, str) or v is None else str(v)) for k, v in values.items())
    if problem is not None:
        raise InvalidValueException(detail=problem)


LOOKUPS = {"username": "user_name_lower", "externalid": "external_id", "id": "key"}
CORE_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:user"


def _lookup(search_request: SearchRequest[Any]) -> tuple[str, str] | None:
    """(column, value) when the filter is ``userName``, ``externalId`` or ``id`` eq a string, else None."""
    if search_request.filter is None:
        return None
    node = search_request.filter.ast
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq or not isinstance(node.value, str):
        return None
    path = node.attr_path
    if path.sub_attr is not None or (path.uri is not None and path.uri.lower() != CORE_USER_URN):
        return None
    column = LOOKUPS.get(path.attr.lower())
    if column is None:
        return None
    return column, (fold(node.value) or "") if column == "user_name_lower" else node.value


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _person_name(data: dict[str, Any], name: dict[str, Any]) -> str | None:
    """The name a person goes by: ``displayName``, else ``name.formatted``, else given and family names
    (RFC 7643 §4.1.1). Okta and Entra often send only ``name``; the member and a group's ``display`` still get one.
    The stored SCIM resource keeps exactly what the IdP sent."""
    parts = " ".join(str(part) for part in (name.get("givenName"), name.get("familyName")) if part)
    return data.get("displayName") or name.get("formatted") or parts or None
