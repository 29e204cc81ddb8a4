"""The one door from a SCIM write to the reconciler (docs/architecture.md, "Layers").

Every SCIM write that changes users, groups or memberships calls :func:`touched` inside its write transaction, with
the match keys of the identities whose data or memberships changed, so that the org's members follow in the same
commit (docs/architecture.md invariant 2).
"""

from __future__ import annotations

from collections.abc import Iterable

from syncd.config import Config
from syncd.sync import pipeline


def touched(config: Config, org_id: int, match_keys: Iterable[str | None], actor: str) -> None:
    """Reconcile the members behind these match keys with the org's rules in ``config`` (the live config of the
    serving process, passed per request) and the SCIM guard; identities without a match key join no one (they are
    reported, see docs/architecture.md, "Unmatched identities")."""
    keys = sorted({key for key in match_keys if key})
    if keys:
        pipeline.reconcile_touched(config, org_id, keys, actor=actor, scim=True)
