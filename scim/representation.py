"""A user's SCIM representation straight from its row, for the reads IdPs send most (docs/architecture.md, "SCIM
hot path").

The ``resource`` column holds the user exactly as scim2-models dumped it when it was written (attribute order and
names included, :mod:`scim.resources`); what changes without a write to the user (its ``groups``, renamed or
joined, RFC 7643 §4.1.2) and what the server adds (``id``, ``meta``, RFC 7643 §3.1) are composed from their rows at
each read. So a GET by id or a ``userName`` / ``externalId`` lookup answers without validating through the models,
byte for byte what the model path answers (``tests/scim/test_scim_stored_reads.py``); anything else (projection,
other filters, conditional requests, a ``$ref`` the model path would publish) takes the model path.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from scim.preconditions import version_tag
from scim.statements import UserRow
from syncd.domain.folding import fold

LIST_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
AFTER_GROUPS = frozenset({"entitlements", "roles", "x509Certificates"})
"""The core User attributes after ``groups`` in RFC 7643 §4.1's order (extensions follow them all)."""
LOOKUP = re.compile(r'\s*(userName|externalId)\s+eq\s+("(?:[^"\\]|\\.)*")\s*', re.IGNORECASE)
LOOKUP_COLUMNS = {"username": "user_name_lower", "externalid": "external_id"}


def lookup(filter_text: str) -> tuple[str, str] | None:
    """(column, value) of a ``userName eq "..."`` / ``externalId eq "..."`` filter, else None."""
    found = LOOKUP.fullmatch(filter_text)
    if found is None:
        return None
    try:
        value = json.loads(found.group(2))
    except ValueError:
        return None
    column = LOOKUP_COLUMNS[found.group(1).lower()]
    return column, (fold(value) or "") if column == "user_name_lower" else value


def stored_as_served(row: UserRow) -> bool:
    """Whether the row's stored resource is served as it is: a ``$ref`` in it would be published (made absolute)."""
    return '"$ref"' not in row.resource


def _time(moment: datetime) -> str:
    """A UTC time as pydantic writes it: ISO 8601 with ``Z``, microseconds only when there are some."""
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def user(row: UserRow, groups: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """The user as a read answers it: ``schemas``, ``id``, ``externalId``, ``meta``, then the stored attributes,
    with ``groups`` in its place."""
    data = json.loads(row.resource)
    location = f"{base_url}/Users/{row.key}"
    served: dict[str, Any] = {"schemas": data.pop("schemas", None), "id": row.key}
    if served["schemas"] is None:
        del served["schemas"]
    if "externalId" in data:
        served["externalId"] = data.pop("externalId")
    served["meta"] = {
        "resourceType": "User",
        "created": _time(row.created_at),
        "lastModified": _time(row.updated_at),
        "location": location,
        "version": version_tag(row.version),
    }
    entries = [_group(entry, base_url) for entry in groups]
    for name, value in data.items():
        if entries and (name in AFTER_GROUPS or ":" in name):
            served["groups"] = entries
            entries = []
        served[name] = value
    if entries:
        served["groups"] = entries
    return served


def _group(entry: dict[str, Any], base_url: str) -> dict[str, Any]:
    served = {"value": entry["value"], "$ref": f"{base_url}/Groups/{entry['value']}"}
    if entry["display"] is not None:
        served["display"] = entry["display"]
    served["type"] = entry["type"]
    return served


def list_response(total: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A page of a lookup (RFC 7644 §3.4.2), its first page."""
    return {
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total,
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
