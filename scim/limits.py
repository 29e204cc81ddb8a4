"""The bounds syncd puts on what one SCIM request may ask, so that none can exhaust the parser, the stack or the SQL.

RFC 7644 leaves a filter's size to the service provider (§3.4.2.2 answers ``invalidFilter`` for one that "is not
supported"; §3.4.2.4 bounds ``count`` by the provider's maximum). syncd decides:

- a filter (the ``filter`` parameter, the body of ``POST .search``, the value filter of a PATCH path) may hold at most
  :data:`MAX_FILTER_TERMS` ``and``/``or``/``not`` operators and nest ``(`` ``[`` at most :data:`MAX_FILTER_DEPTH`
  deep; beyond either it is a 400 ``invalidFilter`` naming the limit. IdPs send filters of one to a few terms
  (Entra: ``userName eq "…"``; Okta: ``userName eq "…"``); 100 terms leaves room for scripted look-ups by list.
- ``startIndex`` beyond :data:`MAX_START_INDEX` reads as that index: there is no result so far out, and the SQL
  ``OFFSET`` of both databases is a signed 64-bit integer. ``count`` is already bounded by ``maxResults``.
"""

from __future__ import annotations

from scim2_models import InvalidFilterException

MAX_FILTER_TERMS = 100
MAX_FILTER_DEPTH = 10
MAX_START_INDEX = 2**31 - 1
_OPERATORS = {"and", "or", "not"}


def check_filter(text: str, what: str = "the filter") -> None:
    """Raise ``invalidFilter`` when ``text`` holds more logical operators or deeper nesting than syncd serves.

    Counts outside quoted strings only, before any parsing, so a hostile filter never reaches a recursive parser.
    """
    operators = 0
    depth = 0
    deepest = 0
    word: list[str] = []
    quoted = False
    escaped = False
    for char in text + " ":
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char.isalpha():
            word.append(char)
            continue
        if word and "".join(word).lower() in _OPERATORS:
            operators += 1
        word.clear()
        if char == '"':
            quoted = True
        elif char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    if operators > MAX_FILTER_TERMS:
        raise InvalidFilterException(
            detail=f"{what} has {operators} and/or/not operators; syncd serves at most {MAX_FILTER_TERMS}: "
            "split the query"
        )
    if deepest > MAX_FILTER_DEPTH:
        raise InvalidFilterException(
            detail=f"{what} nests {deepest} levels of brackets; syncd serves at most {MAX_FILTER_DEPTH}"
        )


def bounded_start_index(start_index: int | None) -> int | None:
    """``startIndex`` within what the databases can offset by (RFC 7644 §3.4.2.4: below 1 reads as 1)."""
    if start_index is None:
        return None
    return min(max(start_index, 1), MAX_START_INDEX)
