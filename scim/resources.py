"""scim2-server's storage step over our rows: SCIM resources in and out of :class:`scim.storage.Rows`, with the SCIM
rules a storage step owns in scim2-server's split (docs/architecture.md, "Layers").

- Projection (RFC 7644 §3.9, :mod:`scim.projection`): a user's ``groups`` and a group's ``members`` are read only when
  the response keeps them.
- Preconditions (RFC 7644 §3.14, :mod:`scim.preconditions`): every write is conditional on the version it read.
- Members (RFC 7643 §4.2): each is a User or Group of this tenant, else 400; what the client sent with a member is
  read back as written.
- Identifiers the store cannot index answer 400, a taken ``userName`` / ``displayName`` 409 (RFC 7644 §3.12).
- Every write reports what it changed to :mod:`scim.reconciliation`, in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import peewee
from scim2_models import (
    Group,
    GroupMembership,
    InvalidValueException,
    Meta,
    NotFoundException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage

from scim import preconditions, reconciliation
from scim.preconditions import version_number, version_tag
from scim.projection import wants
from scim.quirks.okta import person_name
from scim.schema import ENTERPRISE_URN, GROUP_TYPE
from scim.statements import NOTHING_SENT, GroupRow, MemberSent, UserRow
from scim.storage import Rows, Tenant
from syncd.clock import utcnow
from syncd.config import Config
from syncd.domain.folding import fold
from syncd.domain.matching import match_key
from syncd.store.limits import first_problem

NOT_STORED = ("id", "meta", "password", "groups", "members")


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def primary_email(data: dict[str, Any]) -> str | None:
    """The address a person is reached at: the ``primary`` one, else the ``work`` one, else the first."""
    emails = [e for e in data.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    if not emails:
        return None
    chosen = next((e for e in emails if e.get("primary")), None) or next(
        (e for e in emails if e.get("type") == "work"), emails[0]
    )
    return str(chosen["value"])


def user_columns(data: dict[str, Any], match_on: str, resource: str | None = None) -> dict[str, Any]:
    """The columns of a user's row, from its resource as stored (:meth:`SyncdStorage.dump`; ``resource``: that
    resource's JSON text when it is at hand)."""
    enterprise = data.get(ENTERPRISE_URN) or {}
    name = data.get("name") or {}
    manager = enterprise.get("manager") or {}
    user_name = str(data.get("userName") or "")
    email = primary_email(data)
    external_id = data.get("externalId")
    return {
        "user_name": user_name,
        "user_name_lower": fold(user_name),
        "unique_name": fold(user_name),
        "email": email,
        "email_lower": fold(email),
        "external_id": external_id,
        "display_name": person_name(data),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "active": data.get("active") is not False,
        "department": enterprise.get("department"),
        "title": data.get("title"),
        "employee_number": enterprise.get("employeeNumber"),
        "manager_key": manager.get("value"),
        "match_key": match_key(match_on, user_name=user_name, email=email, external_id=external_id),
        "resource": json.dumps(data, separators=(",", ":"), default=str) if resource is None else resource,
    }


class SyncdStorage(ScimStorage):
    """The SCIM resources of one tenant, over its rows."""

    def __init__(
        self,
        tenant: Tenant,
        models: dict[str, type[Resource[Any]]],
        writing: bool = False,
        config: Config | None = None,
    ) -> None:
        self.rows = Rows(tenant, writing)
        self.tenant = tenant
        self.config = config or Config()
        self.models = models
        self._read: dict[str, tuple[UserRow, list[dict[str, Any]]]] = {}
        self.written: dict[str, tuple[UserRow, list[dict[str, Any]]]] = {}
        """Users this request wrote, by key: the row as stored and its groups, to answer with."""

    def operation(self) -> AbstractContextManager[None]:
        return self.rows.operation()

    # -- helpers ------------------------------------------------------------

    def is_group(self, resource_type: ResourceType) -> bool:
        return resource_type.name == GROUP_TYPE.name

    def _model(self, resource_type: ResourceType) -> type[Resource[Any]]:
        return self.models[str(resource_type.name)]

    def user_row(self, key: str) -> UserRow:
        row = self.rows.user(key)
        if row is None:
            raise NotFoundException(detail=f"User {key!r} not found")
        return row

    def group_row(self, key: str) -> GroupRow:
        row = self.rows.group(key)
        if row is None:
            raise NotFoundException(detail=f"Group {key!r} not found")
        return row

    def remember_read(self, row: UserRow, groups: list[dict[str, Any]]) -> None:
        """A user read in this transaction, for the write that follows it (PUT, PATCH and DELETE read first)."""
        self._read[row.key] = (row, groups)

    def _load(self, resource_type: ResourceType, row: Any, extra: dict[str, Any]) -> Resource[Any]:
        data = json.loads(row.resource)
        data.update(extra)
        data["id"] = row.key
        resource = self._model(resource_type).model_validate(data)
        resource.meta = Meta(
            resource_type=str(resource_type.name),
            created=_aware(row.created_at),
            last_modified=_aware(row.updated_at),
            version=version_tag(row.version),
        )
        return resource

    @staticmethod
    def dump(resource: Resource[Any]) -> dict[str, Any]:
        """The resource as its row keeps it."""
        data = resource.model_dump()
        for key in NOT_STORED:
            data.pop(key, None)
        return data

    @contextmanager
    def unique(self, what: str) -> Iterator[None]:
        """A uniqueness violation answers 409 and the transaction goes on."""
        try:
            with self.rows.may_fail():
                yield
        except peewee.IntegrityError:
            raise UniquenessException(detail=f"{what} is already taken in this organization") from None

    def user_columns(self, data: dict[str, Any]) -> dict[str, Any]:
        """The columns a user's row is written with; identifiers the store cannot index are refused (400)."""
        columns = user_columns(data, self.tenant.match_on)
        _refuse_identifiers(
            {"userName": columns["user_name"], "externalId": columns["external_id"], "emails.value": columns["email"]}
        )
        return columns

    def stored_columns(self, row: UserRow) -> dict[str, Any]:
        """The columns ``row`` was written with (they are a function of its stored resource), its match key as
        stored."""
        columns = user_columns(json.loads(row.resource), self.tenant.match_on, row.resource)
        columns["match_key"] = row.match_key
        return columns

    @staticmethod
    def group_columns(data: dict[str, Any]) -> dict[str, Any]:
        display_name = str(data.get("displayName") or "")
        _refuse_identifiers({"displayName": display_name, "externalId": data.get("externalId")})
        return {
            "display_name": display_name,
            "display_name_lower": fold(display_name),
            "unique_name": fold(display_name),
            "external_id": data.get("externalId"),
            "resource": json.dumps(data, separators=(",", ":"), default=str),
        }

    # -- reads --------------------------------------------------------------

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
                extra["members"] = self.rows.members_of([row.id])[row.id]
            return self._load(resource_type, row, extra)
        user = self.user_row(resource_id)
        if not wants(response_parameters, "groups"):
            return self._load(resource_type, user, {})
        groups = self.rows.groups_of([user.key])[user.key]
        self.remember_read(user, groups)
        return self._load(resource_type, user, {"groups": groups})

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
        total, rows = self.rows.search(is_group, self._model(resource_type), search_request)
        if is_group:
            members = self.rows.members_of([r.id for r in rows]) if wants(search_request, "members") else {}
            return SearchPage(
                total,
                [self._load(resource_type, r, {"members": members[r.id]} if r.id in members else {}) for r in rows],
            )
        groups = self.rows.groups_of([r.key for r in rows]) if wants(search_request, "groups") else {}
        return SearchPage(
            total, [self._load(resource_type, r, {"groups": groups[r.key]} if r.key in groups else {}) for r in rows]
        )

    # -- writes -----------------------------------------------------------------

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        now = utcnow()
        key = str(uuid.uuid4())
        data = self.dump(resource)
        if self.is_group(resource_type):
            columns = self.group_columns(data)
            members = self.member_entries(cast(Group, resource).members)
            sent = self.member_sent(cast(Group, resource).members)
            with self.unique("displayName"):
                row = self.rows.insert_group(key, columns, now)
            self.rows.insert_members(row, members, sent)
            reconciliation.members_changed(self.config, self.rows, (k for k, _ in members))
            return self.get(resource_type, key)
        columns = self.user_columns(data)
        with self.unique("userName"):
            self.rows.insert_user(key, columns, now)
        reconciliation.user_created(self.config, self.rows, key, columns)
        self.written[key] = (UserRow(0, key, columns["resource"], 1, now, now, columns["match_key"]), [])
        return self._stored(resource_type, resource, key, now, now, 1, [])

    def update(
        self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None
    ) -> Resource[Any]:
        key = cast(str, resource.id)
        data = self.dump(resource)
        if self.is_group(resource_type):
            row = self.group_row(key)
            columns = self.group_columns(data)
            with self.unique("displayName"):
                self.bump(row, expected_version, **columns)
            members = cast(Group, resource).members
            touched = self.set_members(row, self.member_entries(members), self.member_sent(members))
            if columns["display_name"] != row.display_name:
                touched = touched + self.rows.member_keys(row)
            reconciliation.members_changed(self.config, self.rows, touched)
            return self.get(resource_type, key)
        # PUT and PATCH read the user first, in this same transaction: reuse that read.
        user, groups = self._read.pop(key, None) or (self.user_row(key), self.rows.groups_of([key])[key])
        before = UserRow(
            user.id, user.key, user.resource, user.version, user.created_at, user.updated_at, user.match_key
        )
        columns = self.user_columns(data)
        with self.unique("userName"):
            preconditions.require_written(
                self.rows.update_user(user, version_number(expected_version), columns, utcnow())
            )
        reconciliation.user_updated(self.config, self.rows, before, self.stored_columns(before), columns)
        stored = UserRow(user.id, key, columns["resource"], user.version, user.created_at, user.updated_at, None)
        self.written[key] = (stored, groups)
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
        # Only the groups are new to the model: they are validated, not the whole resource again.
        memberships = [GroupMembership.model_validate(entry) for entry in groups] or None
        return resource.model_copy(update={"id": key, "meta": meta, "password": None, "groups": memberships})

    def bump(self, row: GroupRow, expected_version: str | None, **columns: Any) -> int:
        """Write a group's columns and move its version on, unless another write moved it first."""
        preconditions.require_written(self.rows.update_group(row, version_number(expected_version), columns))
        return row.version

    def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        expected = version_number(expected_version)
        if self.is_group(resource_type):
            row = self.group_row(resource_id)
            preconditions.require(row.version, expected)
            keys = self.rows.member_keys(row)
            self.rows.delete_group(row)
            reconciliation.members_changed(self.config, self.rows, keys)
            return
        cached = self._read.pop(resource_id, None)  # DELETE reads the user first, in this transaction
        user = cached[0] if cached else self.user_row(resource_id)
        preconditions.require(user.version, expected)
        preconditions.require_written(self.rows.delete_user(user, expected))
        reconciliation.user_deleted(self.config, self.rows, user)

    # -- members -----------------------------------------------------------------

    def member_entries(self, members: Iterable[Any] | None) -> list[tuple[str, str]]:
        """(key, kind) of each member, checked to be a User or Group of this tenant (RFC 7643 §4.2)."""
        values = list(dict.fromkeys(m.value for m in members or () if m is not None and m.value))
        return self.resolve_members(values)

    def resolve_members(self, values: list[str]) -> list[tuple[str, str]]:
        kinds = self.rows.member_kinds(values)
        unknown = [v for v in values if v not in kinds]
        if unknown:
            raise InvalidValueException(
                detail=f"member {unknown[0]!r} is not a User or Group of this organization; create it first"
            )
        return [(v, kinds[v]) for v in values]

    def member_sent(self, members: Iterable[Any] | None) -> dict[str, MemberSent]:
        """What the client sent with each member (display, $ref, type), leaving out what only echoes the server's
        own defaults (a PATCH that the library applies to the read group hands every member back with them)."""
        sent: dict[str, MemberSent] = {}
        for member in members or ():
            if member is None or not member.value:
                continue
            default = self.rows.member_defaults.get(member.value, (None, None, None))
            ref = str(member.ref) if member.ref is not None else None
            display = member.display if member.display != default[0] else None
            sent[member.value] = (
                display,
                ref if ref != default[1] else None,
                member.type if member.type != default[2] else None,
            )
        return sent

    def member_keys(self, row: GroupRow) -> list[str]:
        return self.rows.member_keys(row)

    def add_members(self, row: GroupRow, values: list[str], sent: dict[str, MemberSent] | None = None) -> list[str]:
        """Insert the members not there yet; return the keys added. Costs O(added), whatever the group size."""
        if not values:
            return []
        present = set(self.rows.present_members(row, values))
        new = self.resolve_members([v for v in dict.fromkeys(values) if v not in present])
        self.rows.insert_members(row, new, sent)
        return [k for k, _ in new]

    def remove_members(self, row: GroupRow, values: list[str]) -> list[str]:
        """Delete exactly the listed members; return the keys removed."""
        if not values:
            return []
        present = self.rows.present_members(row, values)
        if present:
            self.rows.delete_members(row, present)
        return present

    def set_members(
        self, row: GroupRow, members: list[tuple[str, str]], sent: dict[str, MemberSent] | None = None
    ) -> list[str]:
        """Make the member list exactly ``members`` (with what the client sent of each); return the keys added,
        removed or restated with other attributes (so the group's version moves, RFC 7644 §3.14)."""
        sent = sent or {}
        stored = self.rows.member_sent(row)
        wanted = {k for k, _ in members}
        removed = sorted(set(stored) - wanted)
        self.rows.delete_members(row, removed)
        added = [(k, kind) for k, kind in members if k not in stored]
        self.rows.insert_members(row, added, sent)
        restated = []
        for key, _ in members:
            if key in stored and stored[key] != sent.get(key, NOTHING_SENT):
                self.rows.update_member_sent(row, key, sent.get(key, NOTHING_SENT))
                restated.append(key)
        return removed + [k for k, _ in added] + restated

    def members_changed(self, member_keys: Iterable[str]) -> None:
        reconciliation.members_changed(self.config, self.rows, member_keys)


def _refuse_identifiers(values: dict[str, Any]) -> None:
    """400 naming the attribute the store cannot index (syncd.store.limits), alike on SQLite and PostgreSQL."""
    problem = first_problem((k, v if isinstance(v, str) or v is None else str(v)) for k, v in values.items())
    if problem is not None:
        raise InvalidValueException(detail=problem)
