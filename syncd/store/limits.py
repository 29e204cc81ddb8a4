"""How long an identifier the store keeps, decided once for SQLite and PostgreSQL alike.

Every string column is ``TEXT`` on both databases, so what an RFC allows fits: a display name, title or department
has no length limit (RFC 7643 §2.3.1), an email address is up to 254 octets (RFC 5321 §4.5.3.1 with the 256-octet
path). The strings that are *indexed* for look-ups and uniqueness (a user's key, userName, externalId, email and
match key; a group's key, displayName and externalId; a member key) are bounded by :data:`MAX_IDENTIFIER_CHARS`,
because a PostgreSQL btree entry holds at most about 2,700 bytes and 512 characters of UTF-8 take at most 2,048.
A longer one is refused by name the same way on both databases: a SCIM write answers 400 ``invalidValue``, a
connector's record becomes a problem line of its read (the read is incomplete; the rest is applied).
NUL is refused everywhere too: PostgreSQL text cannot hold it.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_IDENTIFIER_CHARS = 512


def identifier_problem(attribute: str, value: str | None) -> str | None:
    """Why ``value`` cannot be kept as the indexed ``attribute``, or None when it can."""
    if value is None:
        return None
    if "\x00" in value:
        return f"{attribute} holds a NUL character"
    if len(value) > MAX_IDENTIFIER_CHARS:
        return f"{attribute} is {len(value)} characters long; syncd keeps at most {MAX_IDENTIFIER_CHARS}"
    return None


def first_problem(values: Iterable[tuple[str, str | None]]) -> str | None:
    """The first :func:`identifier_problem` among ``(attribute, value)`` pairs."""
    for attribute, value in values:
        problem = identifier_problem(attribute, value)
        if problem is not None:
            return problem
    return None
