"""Our steps of scim2-server's service and handler layers: the IdP quirks and the member fast path.

The service keeps scim2-server's rules and adds the IdPs' quirks (:mod:`scim.quirks`: Entra's unqualified
``manager`` in filters and PATCH paths, Okta's User PATCH answered with the body) and our limits (:mod:`scim.limits`). The handler
subclasses the PATCH step of Groups: operations on ``members`` become ``group_member`` inserts and deletes, so adding
or removing one member of a 10,000-member group never loads or rewrites the member list (RFC 7644 §3.5.2 semantics
kept: add skips members already there, remove takes exactly the selected members, replace sets the list).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

from scim2_models import (
    Context,
    Meta,
    PatchOp,
    PatchOperation,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    SearchRequest,
)
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator
from scim2_server.conditions import Conditions
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation, Target
from scim2_server.routing import match as match_route
from scim2_server.service import ScimService
from scim2_server.utils import parametrize

from scim import projection, representation
from scim.limits import bounded_start_index, check_filter
from scim.preconditions import version_tag
from scim.quirks import entra, okta
from scim.resources import SyncdStorage
from scim.schema import GROUP_TYPE
from scim.statements import NOTHING_SENT, MemberSent

MEMBERS = "members"
ROUTES_REMEMBERED = 4096
"""(method, path) pairs whose SCIM route is kept: one request asks for its route up to four times."""


@functools.lru_cache(maxsize=ROUTES_REMEMBERED)
def _route(method: str, path: str) -> Target:
    return match_route(method, path)


class SyncdService(ScimService):
    """scim2-server's service, with the body limit of the config and Entra's filter shapes."""

    def __init__(self, provider: Any, max_body_bytes: int) -> None:
        super().__init__(provider)
        self.max_body_bytes = max_body_bytes

    def max_body_size(self, request: ScimRequest) -> int | None:
        """Every request body is bounded by ``server.max_body_bytes`` (413 above it)."""
        return self.max_body_bytes

    @staticmethod
    def match(request: ScimRequest) -> Target:
        """scim2-server's route of a request (RFC 7644 §3.2), worked out once per method and path: the web layer,
        the service and the handler each ask for it. A path that routes nowhere raises every time (not kept)."""
        return _route(request.method.upper(), request.path)

    def patch_response(
        self, base_url: str, resource: Resource[Any], response_parameters: ResponseParameters[Any]
    ) -> ScimResponse:
        """A User PATCH answers 200 with the resource (:func:`scim.quirks.okta.patch_answers_with_body`), honouring
        ``attributes`` / ``excludedAttributes``; a Group PATCH keeps 204 unless attributes are asked for."""
        resource_type = resource.meta.resource_type if resource.meta is not None else None
        if not okta.patch_answers_with_body(resource_type, str(GROUP_TYPE.name)):
            return super().patch_response(base_url, resource, response_parameters)
        return self.resource_response(
            self.publish(base_url, resource), Context.RESOURCE_REPLACEMENT_RESPONSE, response_parameters
        )

    def read_patch(self, resource_type: ResourceType, body: bytes, content_type: str | None) -> PatchOp[Any]:
        _check_patch_paths(body)
        if resource_type.name == "User":
            body = entra.qualify_manager_paths(body)
        return super().read_patch(resource_type, body, content_type)

    def read_search(self, resource_types: list[ResourceType], payload: Any) -> tuple[SearchRequest[Any], Any]:
        """Bound the filter and startIndex (scim.limits), and read Entra's unqualified ``manager``."""
        if isinstance(payload, dict):
            for key, value in payload.items():
                if isinstance(key, str) and key.lower() == "filter" and isinstance(value, str):
                    check_filter(value)
        search_request, position = self._read_search(resource_types, payload)
        search_request.start_index = bounded_start_index(search_request.start_index)
        return search_request, position

    def _read_search(self, resource_types: list[ResourceType], payload: Any) -> tuple[SearchRequest[Any], Any]:
        if (
            isinstance(payload, dict)
            and isinstance(payload.get("filter"), str)
            and "manager" in payload["filter"].lower()
        ):
            try:
                parsed = ScimFilter(payload["filter"])
            except Exception:  # the parent step reports the invalid filter as invalidFilter
                parsed = None
            if parsed is not None:
                rewritten = entra.qualify_manager(parsed.ast)
                if rewritten != parsed.ast:
                    payload = {**payload, "filter": str(rewritten)}
        return super().read_search(resource_types, payload)


def _check_patch_paths(body: bytes) -> None:
    """Bound the value filters of PATCH paths (``members[value eq "a" or ...]``) as search filters are."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # scim2-models answers it with invalidSyntax
        return
    operations = payload.get("Operations") if isinstance(payload, dict) else None
    for operation in operations if isinstance(operations, list) else []:
        path = operation.get("path") if isinstance(operation, dict) else None
        if isinstance(path, str):
            check_filter(path, "the PATCH path")


@dataclass
class MemberPlan:
    """The member operations of a Group PATCH, in order, and the other operations left for scim2-models."""

    steps: list[tuple[str, list[str] | None]] = field(default_factory=list)
    others: list[PatchOperation[Any]] = field(default_factory=list)
    sent: dict[str, MemberSent] = field(default_factory=dict)


def _member_values(value: Any, sent: dict[str, MemberSent] | None = None) -> list[str] | None:
    """The ids of a ``members`` value: a list of ``{"value": id, ...}`` (or one such object); what the client sent
    with each (``display``, ``$ref``, ``type``, RFC 7643 §4.2) goes to ``sent``, to be read back as written."""
    entries = value if isinstance(value, list) else [value]
    ids: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            keys = {k.lower() for k in entry}
            if "value" not in keys or not keys <= {"value", "$ref", "display", "type"}:
                return None
            lowered = {k.lower(): v for k, v in entry.items()}
            item = lowered["value"]
            extra = tuple(lowered.get(k) for k in ("display", "$ref", "type"))
        else:
            item = getattr(entry, "value", None)
            ref = getattr(entry, "ref", None)
            extra = (getattr(entry, "display", None), None if ref is None else str(ref), getattr(entry, "type", None))
        if not isinstance(item, str) or not item:
            return None
        if not all(part is None or isinstance(part, str) for part in extra):
            return None
        if sent is not None:
            sent[item] = cast(MemberSent, extra)
        ids.append(item)
    return ids


def _selected_values(node: FilterNode) -> list[str] | None:
    """The ids a ``members[value eq "a" or value eq "b"]`` selection names, or None for another filter."""
    if isinstance(node, Comparison):
        attr = node.attr_path
        if (
            attr.uri is None
            and attr.sub_attr is None
            and attr.attr.lower() == "value"
            and node.op == CompareOperator.eq
            and isinstance(node.value, str)
        ):
            return [node.value]
        return None
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.or_:
        values: list[str] = []
        for term in node.terms:
            found = _selected_values(term)
            if found is None:
                return None
            values.extend(found)
        return values
    return None


def plan_members(patch_op: PatchOp[Any]) -> MemberPlan | None:
    """Split a Group PATCH into member steps and other operations; None when a member step needs the whole list."""
    plan = MemberPlan()
    for operation in patch_op.operations or []:
        op = operation.op
        path = operation.path
        if path is None:
            value = operation.value
            if not isinstance(value, dict):
                plan.others.append(operation)
                continue
            member_keys = [k for k in value if k.lower() == MEMBERS]
            rest = {k: v for k, v in value.items() if k.lower() != MEMBERS}
            for key in member_keys:
                ids = _member_values(value[key], plan.sent)
                if ids is None:
                    return None
                plan.steps.append(("set" if op == PatchOperation.Op.replace_ else "add", ids))
            if rest:
                plan.others.append(operation.model_copy(update={"value": rest}))
            continue
        parts = [p.lower() for p in path.parts]
        if not parts or parts[0] != MEMBERS:
            plan.others.append(operation)
            continue
        if len(parts) > 1:
            return None
        if path.value_filter is not None:
            selected = _selected_values(path.value_filter)
            if op != PatchOperation.Op.remove or selected is None or operation.value is not None:
                return None
            plan.steps.append(("remove", selected))
            continue
        if op == PatchOperation.Op.remove:
            if operation.value is None:
                plan.steps.append(("clear", None))
                continue
            ids = _member_values(operation.value)
            if ids is None:
                return None
            plan.steps.append(("remove", ids))
            continue
        ids = _member_values(operation.value, plan.sent)
        if ids is None:
            return None
        plan.steps.append(("set" if op == PatchOperation.Op.replace_ else "add", ids))
    return plan


class SyncdHandler(ScimHandler):
    """scim2-server's handler, with Group PATCH on ``members`` turned into row inserts and deletes."""

    storage: SyncdStorage

    def __init__(self, service: SyncdService, storage: SyncdStorage, *, stored_responses: bool = True) -> None:
        super().__init__(service, storage)
        self.patch_query: dict[str, str] = {}
        self.stored_responses = stored_responses

    def patch(self, request: ScimRequest) -> ScimResponse:
        self.patch_query = dict(request.query)
        return super().patch(request)

    def create(self, request: ScimRequest) -> ScimResponse:
        """scim2-server's create (RFC 7644 §3.3), answering a created User from its stored representation."""
        with self.service.provider:
            target = self.service.route(request, Operation.create)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            resource = self.service.read_creation(resource_type, request.body, request.header("Content-Type"))
            with self.storage.operation():
                created = self.storage.create(resource_type, resource)
            stored = self.stored_response(request.base_url, created, HTTPStatus.CREATED)
            if stored is not None:
                stored.headers["Location"] = stored.headers["Content-Location"]
                return stored
            return self.service.creation_response(request.base_url, created)

    def replace(self, request: ScimRequest) -> ScimResponse:
        """scim2-server's replace (RFC 7644 §3.5.1), answering a replaced User from its stored representation when
        no ``attributes`` / ``excludedAttributes`` are asked for."""
        with self.service.provider:
            target = self.service.route(request, Operation.replace)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            response_parameters = self.service.read_response_parameters(resource_type, request.query)
            with self.storage.operation():
                current = self.storage.get(resource_type, cast(str, target.resource_id))
                replacement = self.service.read_replacement(resource_type, request.body, request.header("Content-Type"))
                resource = self.replace_resource(
                    resource_type, current, replacement, self.service.read_conditions(request)
                )
            stored = None if projection.asked(response_parameters) else self.stored_response(request.base_url, resource)
            response = stored or self.service.replacement_response(request.base_url, resource, response_parameters)
            return self.service.me_response(request, target, response)

    def stored_response(
        self, base_url: str, resource: Resource[Any], status: HTTPStatus = HTTPStatus.OK
    ) -> ScimResponse | None:
        """The response carrying a User this request wrote, from the representation stored with it
        (:mod:`scim.representation`: the same bytes the model path dumps), or None to dump through the models."""
        written = self.storage.written.get(cast(str, resource.id)) if self.stored_responses else None
        if written is None or not representation.stored_as_served(written[0]):
            return None
        row, groups = written
        body = representation.user(row, groups, base_url)
        meta = body["meta"]
        return ScimResponse(status, body, {"Content-Location": meta["location"], "ETag": meta["version"]})

    def _response_parameters(self, resource_type: ResourceType) -> ResponseParameters[Any]:
        parameters = self.service.read_response_parameters(resource_type, self.patch_query)
        if not parameters.attributes and not parameters.excluded_attributes:
            # No body is sent back (204, or a Bulk outcome): the members need not be read.
            return self.service.read_response_parameters(resource_type, {"excludedAttributes": MEMBERS})
        return parameters

    def delete_resource(self, resource_type: ResourceType, resource_id: str, conditions: Conditions) -> None:
        """Check the preconditions on the row's version alone: a DELETE needs no attribute (RFC 7644 §3.6, §3.14).

        scim2-server reads the whole resource first; for a group that would read every member.
        """
        storage = self.storage
        if storage.is_group(resource_type):
            row: Any = storage.group_row(resource_id)
        else:
            row = storage.user_row(resource_id)
            storage.remember_read(row, [])
        version = version_tag(row.version)
        if conditions.if_match is not None or conditions.if_none_match is not None:
            current = self.service.get_model(resource_type).model_construct(
                id=row.key, meta=Meta(resource_type=str(resource_type.name), version=version)
            )
            self.service.check_deletion(current, conditions)
        storage.delete(resource_type, resource_id, expected_version=version)

    def patch_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        patch_op: PatchOp[Any],
        conditions: Conditions,
    ) -> Resource[Any]:
        """Apply a Group PATCH without reading the member list when its member operations allow it."""
        if not self.storage.is_group(resource_type):
            return super().patch_resource(resource_type, resource_id, patch_op, conditions)
        plan = plan_members(patch_op)
        if plan is None:
            return super().patch_resource(resource_type, resource_id, patch_op, conditions)
        storage = self.storage
        row = storage.group_row(resource_id)
        without_members = self.service.read_response_parameters(resource_type, {"excludedAttributes": MEMBERS})
        current = storage.get(resource_type, resource_id, response_parameters=without_members)
        assert current.meta is not None
        version = current.meta.version
        self.service.check_preconditions(current, "PATCH", conditions)
        changed_fields = False
        if plan.others:
            others = parametrize(PatchOp, self.service.get_model(resource_type))(operations=plan.others)
            changed_fields = others.patch(current)
        touched: list[str] = []
        for action, ids in plan.steps:
            if action == "add":
                touched += storage.add_members(row, cast(list[str], ids), plan.sent)
            elif action == "remove":
                touched += storage.remove_members(row, cast(list[str], ids))
            elif action == "clear":
                touched += storage.remove_members(row, storage.member_keys(row))
            else:
                chosen = list(dict.fromkeys(ids or []))
                sent = {k: plan.sent.get(k, NOTHING_SENT) for k in chosen}
                touched += storage.set_members(row, storage.resolve_members(chosen), sent)
        if not changed_fields and not touched:
            return current
        renamed = False
        if changed_fields:
            columns = storage.group_columns(storage.dump(current))
            renamed = columns["display_name"] != row.display_name
            with storage.unique("displayName"):
                storage.bump(row, version, **columns)
        else:
            storage.bump(row, version)
        if renamed:
            touched = touched + storage.member_keys(row)
        storage.members_changed(touched)
        return storage.get(resource_type, resource_id, response_parameters=self._response_parameters(resource_type))
