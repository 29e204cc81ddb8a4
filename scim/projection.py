"""Attribute projection (RFC 7644 §3.9): which attributes a response keeps, decided before anything is read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scim2_models import ResponseParameters


def wants(parameters: ResponseParameters[Any] | None, attribute: str) -> bool:
    """Whether a response keeps ``attribute`` under ``attributes`` / ``excludedAttributes``, so that excluded
    members or groups are never loaded."""
    if parameters is None:
        return True
    name = attribute.lower()

    def names(paths: Iterable[Any] | None) -> set[str]:
        return {str(path.parts[0]).lower() for path in paths or () if path.parts}

    if parameters.excluded_attributes and name in names(parameters.excluded_attributes):
        return False
    return not (parameters.attributes and name not in names(parameters.attributes))


def asked(parameters: ResponseParameters[Any] | None) -> bool:
    """Whether the request names ``attributes`` or ``excludedAttributes`` at all (else the default set returns)."""
    return parameters is not None and bool(parameters.attributes or parameters.excluded_attributes)
