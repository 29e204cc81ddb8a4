"""Sources as an operator sees them: each configured source and each org's SCIM source with how its last run went,
and the identities a source holds that join no member.

A source's run columns are written by :mod:`syncd.sync.source_runs` only; this module reads them
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.clock import iso_seconds
from syncd.config import Config
from syncd.store.models import Organization, Source
from syncd.sync.gather import Unmatched, unmatched


@dataclass(frozen=True)
class Unjoined:
    """The identities of one source that join no member, and the org key they lack."""

    match_on: str
    identities: list[Unmatched]


def listing(config: Config, name: str | None = None) -> list[dict[str, Any]]:
    """Every source (or the one named), by org and name, as ``syncd sources list --format json`` prints it."""
    configured = {s.name: s for s in config.sources}
    query = Source.select(Source, Organization).join(Organization).order_by(Organization.slug, Source.name)
    if name is not None:
        query = query.where(Source.name == name)
    rows = []
    for source in query:
        settings = configured.get(source.name)
        rows.append(
            {
                "name": source.name,
                "org": source.org.slug,
                "kind": source.kind,
                "precedence": source.precedence,
                "schedule": settings.schedule if settings else ("push" if source.kind == "scim" else None),
                "configured": settings is not None or source.kind == "scim",
                "last_run_at": _when(source.last_run_at),
                "last_success_at": _when(source.last_success_at),
                "last_full_at": _when(source.last_full_at),
                "consecutive_failures": source.consecutive_failures,
                "last_error": source.last_error,
                "notes": source.last_notes.splitlines() if source.last_notes else [],
            }
        )
    return rows


def find(config: Config, name: str) -> dict[str, Any] | None:
    """The source named ``name`` as :func:`listing` shows it, or None."""
    found = listing(config, name)
    return found[0] if found else None


def unjoined(name: str) -> Unjoined:
    """The identities of source ``name`` without the org's ``match_on`` key (they join no member)."""
    source = Source.select(Source, Organization).join(Organization).where(Source.name == name).get()
    return Unjoined(source.org.match_on, unmatched(source.org, source.id))


def _when(value: datetime | None) -> str | None:
    return iso_seconds(value) if value is not None else None
