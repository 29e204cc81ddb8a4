"""The one place the shell reads the clock; the reconciler takes time as an argument instead."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the store keeps."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime) -> str:
    """A stored naive-UTC time as RFC 3339 text with microseconds (stable, so ledger hashes recompute exactly)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_seconds(moment: datetime) -> str:
    """A stored naive-UTC time as RFC 3339 text to the second, as the CLI shows when something happened."""
    return moment.isoformat(timespec="seconds") + "Z"
