"""How identities of different sources join into one member: the org's ``match_on`` key, case-insensitively."""

from __future__ import annotations

import re

from syncd.domain.folding import fold

_EMAIL_SHAPED = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def email_shaped(value: str | None) -> bool:
    """Whether ``value`` looks like an address (local@domain.tld): Entra's and Okta's userName usually is one."""
    return value is not None and _EMAIL_SHAPED.match(value.strip()) is not None


def match_key(match_on: str, *, user_name: str | None, email: str | None, external_id: str | None) -> str | None:
    """The folded, trimmed join key of an identity, or None when it lacks the org's key (it then joins no one).

    Email and userName compare case-insensitively (RFC 7643 §4.1.1 makes userName caseExact false; mailbox local
    parts are case-insensitive in practice), and so does externalId here, since HR systems vary its case.
    With ``match_on = "email"`` an identity without an email joins by its userName when that is email-shaped (an
    IdP that sends no ``emails``); one still without a key is reported as unmatched (docs/architecture.md).
    """
    value = {"email": email, "userName": user_name, "externalId": external_id}[match_on]
    if match_on == "email" and not (value or "").strip() and email_shaped(user_name):
        value = user_name
    if value is None:
        return None
    return fold_key(value) or None


def fold_key(value: str) -> str:
    """A join key: trimmed, then folded as every stored identifier is (:func:`syncd.domain.folding.fold`: NFC, lower
    case). What a person types to find a member folds the same way."""
    return fold(value.strip())
