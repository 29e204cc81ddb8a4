"""The one case folding of identifiers: when two spellings of a userName, an email or a group name are the same.

Match keys (:mod:`syncd.domain.matching`) and the stored ``*_lower`` and ``unique_name`` columns (staging, SCIM
storage) are folded by :func:`fold`, and :meth:`syncd.store.dialect.Dialect.fold` is its SQL twin; so a person sent
composed (``é``, U+00E9) by one source and decomposed (``e`` + U+0301) by another is one member, and a SCIM filter
finds either spelling (docs/architecture.md, "SQL and the two databases").
"""

from __future__ import annotations

import unicodedata
from typing import overload


@overload
def fold(value: str) -> str: ...


@overload
def fold(value: None) -> None: ...


def fold(value: str | None) -> str | None:
    """``value`` in NFC, lower-cased, then NFC again; None stays None.

    RFC 7643 §4.1.1 makes userName ``caseExact`` false, so filters compare it case-insensitively (RFC 7644
    §3.4.2.2), and RFC 8265 §3.3 (UsernameCaseMapped, which obsoletes RFC 7613) maps case with Unicode
    ``toLowerCase`` and normalizes to NFC. Lower case, not ``casefold``: RFC 8265 moved away from Default Case
    Folding, which joins "ß" with "ss", and PostgreSQL's ``lower`` (under ICU's root locale) is the SQL twin. The first NFC makes composed and
    decomposed input one string before case mapping; the last one recomposes what lower-casing decomposed. RFC
    8265's width mapping (fullwidth letters) is not applied: SCIM's case-insensitive comparison does not ask for
    it, and it would join identities that were kept apart until now. ASCII takes a fast path. Idempotent: ``fold(fold(s)) == fold(s)``, and ``fold(s.lower()) == fold(s)``, so a
    key folded by lower case alone re-folds to the key folding ``s`` gives (syncd/store/migrations.py relies on it).
    """
    if value is None:
        return None
    if value.isascii():
        return value.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())
