"""How identities of different sources join into one member: the org's ``match_on`` key, case-insensitively."""

from __future__ import annotations

MATCH_ON = ("email", "userName", "externalId")


def match_key(match_on: str, *, user_name: str | None, email: str | None, external_id: str | None) -> str | None:
    """The lower-cased, trimmed join key of an identity, or None when it lacks the org's key (it then joins no one).

    Email and userName compare case-insensitively (RFC 7643 §4.1.1 makes userName caseExact false; mailbox local
    parts are case-insensitive in practice), and so does externalId here, since HR systems vary its case.
    """
    value = {"email": email, "userName": user_name, "externalId": external_id}[match_on]
    if value is None:
        return None
    value = value.strip().lower()
    return value or None
