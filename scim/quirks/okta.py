"""Okta's SCIM 2.0 provisioning, where it needs more than RFC 7643 / RFC 7644 ask.

Source: "Okta and SCIM Version 2.0" (https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20).

- A User PATCH is answered 200 with the user in the body: Okta reads the result of its update from it (RFC 7644
  §3.5.2 allows 200 with the resource or 204) (:func:`patch_answers_with_body`).
- Okta sends attributes of its own besides the core and enterprise schemas: they are dropped, never refused
  (:data:`UNKNOWN_ATTRIBUTES`).
- Users often come with ``name`` only, no ``displayName``: the member and a group's ``display`` still need a name to
  show (:func:`person_name`; Entra does the same).
"""

from __future__ import annotations

from typing import Any

from scim2_models import ScimPolicy

UNKNOWN_ATTRIBUTES = ScimPolicy.Unknown.ignore


def patch_answers_with_body(resource_type_name: str | None, group_type_name: str) -> bool:
    """A PATCH of a User answers with its body; a Group PATCH keeps 204, so that a member change never reads a
    10,000-member list back."""
    return resource_type_name is not None and resource_type_name != group_type_name


def person_name(data: dict[str, Any]) -> str | None:
    """The name a person goes by: ``displayName``, else ``name.formatted``, else given and family names
    (RFC 7643 §4.1.1). The stored SCIM resource keeps exactly what the IdP sent."""
    name = data.get("name") or {}
    parts = " ".join(str(part) for part in (name.get("givenName"), name.get("familyName")) if part)
    return data.get("displayName") or name.get("formatted") or parts or None
