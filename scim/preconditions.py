"""Versions and preconditions (RFC 7644 §3.14): weak ETags from the row's version counter, and the refusal of a
write whose resource moved since it was read."""

from __future__ import annotations

from scim2_models import PreconditionFailedException


def version_tag(version: int) -> str:
    """A weak ETag from the row's version counter."""
    return f'W/"{version}"'


def version_number(tag: str | None) -> int | None:
    """The version counter an ETag names; None without a tag, -1 for a tag that names none of ours."""
    if tag is None:
        return None
    text = tag.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isdigit() else -1


def moved() -> PreconditionFailedException:
    """412: another write moved the resource since this request read it."""
    return PreconditionFailedException(detail="the resource changed since it was read; read it again")


def require(version: int, expected: int | None) -> None:
    """Refuse with 412 unless the row is still at ``expected`` (when one is given)."""
    if expected is not None and version != expected:
        raise moved()


def require_written(changed_rows: int) -> None:
    """Refuse with 412 when a versioned ``UPDATE`` / ``DELETE`` found the row already moved on."""
    if changed_rows == 0:
        raise moved()
