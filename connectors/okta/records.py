"""Okta users and groups as connector records, and which Okta user statuses count as active.

Status mapping (developer.okta.com, Users API, "User status" and "Understand user status"):

========================  ========  =================================================================================
Okta status               active    why
========================  ========  =================================================================================
``ACTIVE``                yes       the normal state of a working account
``PROVISIONED``           yes       an admin activated the account; the person has not set a password yet. The
                                    decision to grant access is made — only the first sign-in is pending
``RECOVERY``              yes       a password reset is in progress; the account and the job are unchanged
``PASSWORD_EXPIRED``      yes       the person must change the password at the next sign-in; nothing else changed
``LOCKED_OUT``            yes       too many failed sign-ins: a temporary security lock that clears on unlock or
                                    after the lockout period, not a lifecycle decision. Suspending org access for a
                                    mistyped password would be wrong (and noisy)
``STAGED``                no        created but never activated: Okta itself grants no access and provisions no
                                    app until activation, so neither do we
``SUSPENDED``             no        an admin suspended the person: no sign-in, app access paused
``DEPROVISIONED``         no        deactivated: the offboarding state; Okta hides these from a plain user list,
                                    which is why every read asks for them by status filter
anything else             no        an unknown, future status grants nothing until this table learns it; a mass
                                    change is held by the org's guard
========================  ========  =================================================================================

``external_id`` is the Okta user id: that is what Okta sends as ``externalId`` when it provisions by SCIM, so a
person pushed by Okta's SCIM client and read by this connector match under ``match_on = "externalId"``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from connectors.interface import GroupRecord, UserRecord

ACTIVE_STATUSES = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"})
ALL_STATUSES = (
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "PASSWORD_EXPIRED",
    "LOCKED_OUT",
    "SUSPENDED",
    "DEPROVISIONED",
)
STATUS_FILTER = " or ".join(f'status eq "{status}"' for status in ALL_STATUSES)
"""A filter matching every status, so that DEPROVISIONED users are listed too (a plain list omits them)."""


def is_active(status: str | None) -> bool:
    return status in ACTIVE_STATUSES


def user_record(user: dict[str, Any]) -> UserRecord:
    """An Okta user object (Users API, "User object") as a UserRecord."""
    profile = user.get("profile") or {}
    first, last = _text(profile.get("firstName")), _text(profile.get("lastName"))
    display = _text(profile.get("displayName")) or " ".join(p for p in (first, last) if p) or None
    status = _text(user.get("status"))
    return UserRecord(
        key=str(user["id"]),
        user_name=_text(profile.get("login")) or str(user["id"]),
        email=_text(profile.get("email")),
        external_id=str(user["id"]),
        display_name=display,
        given_name=first,
        family_name=last,
        active=is_active(status),
        department=_text(profile.get("department")),
        title=_text(profile.get("title")),
        employee_number=_text(profile.get("employeeNumber")),
        manager_key=_text(profile.get("managerId")),  # the Okta id of the user's manager (default profile)
        attributes={"okta_status": status},
    )


def group_record(group: dict[str, Any], member_keys: Iterable[str] | None) -> GroupRecord:
    """An Okta group object (Groups API, "Group object") with its direct members, or ``None`` for "unchanged"."""
    profile = group.get("profile") or {}
    return GroupRecord(
        key=str(group["id"]),
        display_name=group_name(group),
        member_keys=None if member_keys is None else frozenset(member_keys),
        attributes={"type": group.get("type"), "description": _text(profile.get("description"))},
    )


def group_name(group: dict[str, Any]) -> str:
    return _text((group.get("profile") or {}).get("name")) or str(group["id"])


def selected(group: dict[str, Any], types: tuple[str, ...], name_globs: tuple[str, ...]) -> bool:
    """Whether the source reads this group: its type among ``group_types`` and its name matching a glob (if given).

    Globs match case-insensitively, as Okta group names are unique regardless of case.
    """
    if types and group.get("type") not in types:
        return False
    if not name_globs:
        return True
    name = group_name(group).casefold()
    return any(fnmatch.fnmatchcase(name, glob.casefold()) for glob in name_globs)


def type_filter(types: tuple[str, ...]) -> str | None:
    """The server-side part of group selection (the Groups API filters on ``type``); names are matched here."""
    if not types:
        return None
    return " or ".join(f'type eq "{t}"' for t in types)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
