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

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import peewee

from syncd.store.db import database
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


DECLARE_LOCK_KEY = 7362002


@contextlib.contextmanager
def declaration_lock() -> Iterator[None]:
    """Serialize declaring the config's orgs and sources across replicas starting at once (PostgreSQL).

    Declaring is check-then-insert; two replicas doing it together would both insert an org. A session-level
    advisory lock (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS) makes them take
    turns; SQLite needs none, its write transactions already serialize (``BEGIN IMMEDIATE``).
    """
    db = database.obj
    if not isinstance(db, peewee.PostgresqlDatabase):
        yield
        return
    db.execute_sql("SELECT pg_advisory_lock(%s)", (DECLARE_LOCK_KEY,))
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (DECLARE_LOCK_KEY,))
