"""Microsoft Entra ID's provisioning service, where it departs from RFC 7643 / RFC 7644.

Sources: "Known issues and resolutions with SCIM 2.0 protocol compliance of the Microsoft Entra user provisioning
service" (https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility)
and "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID"
(https://learn.microsoft.com/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups).

- The enterprise ``manager`` comes in three shapes: ``{"value": id}`` without the ``$ref`` RFC 7643 §4.3 requires, a
  bare id string (the default PATCH), or a one-entry list like other reference values (:class:`Manager`).
- Filters and PATCH paths name ``manager`` unqualified (``manager eq "id"``, ``"path": "manager"``): read as the
  enterprise extension's (:func:`qualify_manager`, :func:`qualify_manager_paths`).
- Groups list an extra schema URN (:data:`EXTRA_GROUP_SCHEMA`), dropped by the tolerance policy (``unknown=ignore``).
- Members are removed with ``{"op": "Remove", "path": "members", "value": [{"value": id}]}``: only the listed members
  go, never the whole list (:data:`REMOVE_VALUE`).
- ``Add`` on ``emails[type eq "work"].value`` when the user has no work email creates the entry
  (:data:`UNMATCHED_PATH_FILTER`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, model_validator
from scim2_models import CaseExact, ComplexAttribute, Mutability, Reference, ScimPolicy, User
from scim2_models.path import AttrPath, Comparison, FilterNode, LogicalExpr, Not, Present

from scim.urns import ENTERPRISE_URN

EXTRA_GROUP_SCHEMA = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
REMOVE_VALUE = ScimPolicy.RemoveValue.apply
UNMATCHED_PATH_FILTER = ScimPolicy.UnmatchedPathFilter.create


class Manager(ComplexAttribute):
    """The enterprise ``manager`` (RFC 7643 §4.3) with an optional ``$ref``."""

    value: Annotated[str | None, CaseExact.true] = None
    ref: Annotated[Reference[User] | None, Mutability.read_write] = Field(  # type: ignore[type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None

    @model_validator(mode="before")
    @classmethod
    def _bare_id(cls, value: Any) -> Any:
        """Entra's default PATCH sends the manager as a bare id string; reference attributes may also come as a
        one-entry list ``[{"value": id, "$ref": ...}]``, as Entra sends reference values: the entry is the manager."""
        if isinstance(value, list):
            value = value[0] if value else {}
        if isinstance(value, str):
            return {"value": value}
        return value


def qualify_manager(node: FilterNode) -> FilterNode:
    """``manager eq "id"`` read as the enterprise ``manager.value``."""
    if isinstance(node, Comparison | Present):
        path = node.attr_path
        if path.uri is None and path.attr.lower() == "manager":
            qualified = AttrPath(attr="manager", sub_attr=path.sub_attr or "value", uri=ENTERPRISE_URN)
            if isinstance(node, Comparison):
                return Comparison(qualified, node.op, node.value)
            return Present(qualified)
        return node
    if isinstance(node, Not):
        return Not(qualify_manager(node.expr))
    if isinstance(node, LogicalExpr):
        return LogicalExpr(node.op, tuple(qualify_manager(term) for term in node.terms))
    return node


def qualify_manager_paths(body: bytes) -> bytes:
    """A User PATCH's ``"path": "manager"`` (and ``manager`` keys of a path-less value) read as the enterprise
    manager's."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # scim2-models answers the same body with invalidSyntax
        return body
    operations = payload.get("Operations") if isinstance(payload, dict) else None
    if not isinstance(operations, list):
        return body
    changed = False
    for operation in operations:
        if not isinstance(operation, dict):
            continue
        path = operation.get("path")
        if isinstance(path, str) and path.split(".", 1)[0].strip().lower() == "manager":
            operation["path"] = f"{ENTERPRISE_URN}:{path.strip()}"
            changed = True
        value = operation.get("value")
        if path is None and isinstance(value, dict):
            for key in [k for k in value if k.split(".", 1)[0].lower() == "manager"]:
                value[f"{ENTERPRISE_URN}:{key}"] = value.pop(key)
                changed = True
    return json.dumps(payload).encode() if changed else body
