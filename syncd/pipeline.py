"""One source run, end to end: read → stage → plan → guard → apply (DESIGN.md, "What flows through it").

This module is the shell's entry point for source runs (CLI ``syncd sync``, the scheduler, the admin API) and for
SCIM writes (:func:`reconcile_touched`, called inside the SCIM write transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from syncd.config import Config


@dataclass
class RunResult:
    """What a source run did. ``held`` means the guard stopped the plan; ``complete`` mirrors the read."""

    source: str
    org: str
    plan_id: str | None = None
    actions: int = 0
    applied: bool = False
    held: bool = False
    complete: bool = True
    problems: list[str] = field(default_factory=list)


def run_source(
    config: Config,
    source_name: str,
    *,
    dry_run: bool = False,
    full: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Read the named source and apply what it says, in one transaction with its new cursor."""
    raise NotImplementedError("built by the reconciliation issue")


def reconcile_touched(org_id: int, match_keys: Iterable[str], actor: str, now: datetime | None = None) -> int:
    """Reconcile the members with these match keys, inside the caller's open write transaction.

    SCIM writes call it after changing identities, groups or memberships of the org's scim source, with the match
    keys of every identity whose data or memberships changed. Returns the number of member changes applied.
    """
    raise NotImplementedError("built by the reconciliation issue")
