"""Per-source leases in the database, so that exactly one replica runs a source at a time (DESIGN.md, "Running it").

A lease is the pair ``Source.lease_owner`` / ``Source.lease_until``, taken by one conditional UPDATE (a
compare-and-set the database executes atomically on SQLite and PostgreSQL alike, so no advisory lock or extra
round trip is needed):

- while a run is in flight the row holds ``lease_owner = <replica>`` and ``lease_until = now + ttl``, renewed by
  a heartbeat; a replica that crashes stops renewing and its lease expires after ``ttl``;
- when a run ends the owner is cleared and ``lease_until`` is left at a *cooldown*: the start of the next schedule
  slot (later while the source is quarantined). A scheduled claim needs ``lease_until`` in the past, so when every
  replica fires for the same slot exactly one of them runs it; a manual trigger ignores the cooldown but never an
  owner's live lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from syncd.store.models import Source


def claim(source: str, owner: str, now: datetime, ttl: float, *, scheduled: bool = True) -> bool:
    """Take the source's lease for ``owner`` until ``now + ttl``; False when another replica holds it or (scheduled)
    the source is cooling down until its next slot."""
    expired = Source.lease_until.is_null() | (Source.lease_until <= now)
    free = expired if scheduled else (Source.lease_owner.is_null() | expired)
    changed = (
        Source.update(lease_owner=owner, lease_until=now + timedelta(seconds=ttl))
        .where((Source.name == source) & free)
        .execute()
    )
    return changed == 1


def renew(source: str, owner: str, now: datetime, ttl: float) -> bool:
    """Extend a held lease; False means it was lost (expired and taken over), so the holder must not assume it."""
    changed = (
        Source.update(lease_until=now + timedelta(seconds=ttl))
        .where((Source.name == source) & (Source.lease_owner == owner))
        .execute()
    )
    return changed == 1


def release(source: str, owner: str, cooldown_until: datetime) -> bool:
    """Give the lease up, leaving ``cooldown_until`` as the earliest moment of the next scheduled claim."""
    changed = (
        Source.update(lease_owner=None, lease_until=cooldown_until)
        .where((Source.name == source) & (Source.lease_owner == owner))
        .execute()
    )
    return changed == 1
