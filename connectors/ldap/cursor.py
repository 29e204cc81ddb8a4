"""The cursor an LDAP source hands back with each read: an opaque string to syncd, JSON to this connector.

It records the incremental mode's position (syncrepl cookies, an AD USN position, a timestamp watermark) and a
fingerprint of the settings that shape the read (bases, filters, scopes, mapping), so a cursor taken under other
settings is never used to compute a delta: the next read is full instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict
from typing import Any

from connectors.ldap.settings import Settings

VERSION = 1


def fingerprint(settings: Settings, flavor: str) -> str:
    shaping = asdict(settings)
    kept = {
        key: shaping[key]
        for key in (
            "users_base",
            "groups_base",
            "users_filter",
            "groups_filter",
            "users_scope",
            "groups_scope",
            "disabled_filter",
            "attributes",
            "extra_attributes",
            "member_of",
        )
    }
    kept["flavor"] = flavor
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(mode: str, fingerprint_: str, position: dict[str, Any]) -> str:
    return json.dumps({"v": VERSION, "mode": mode, "fp": fingerprint_, "position": position}, sort_keys=True)


def decode(text: str | None, mode: str, fingerprint_: str) -> dict[str, Any] | None:
    """The position stored in ``text`` when it was made by this mode under these settings; else ``None``."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("v") != VERSION or value.get("mode") != mode:
        return None
    if value.get("fp") != fingerprint_ or not isinstance(value.get("position"), dict):
        return None
    return value["position"]


def pack(cookie: bytes | None) -> str | None:
    return base64.b64encode(cookie).decode("ascii") if cookie else None


def unpack(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None
