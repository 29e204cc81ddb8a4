"""Per-source leases in the database, so that exactly one replica runs a source at a time (docs/architecture.md,
"Running it").

A lease is the pair ``Source.lease_owner`` / ``Source.lease_until``, taken by one conditional UPDATE (a
compare-and-set the database executes atomically on SQLite and PostgreSQL alike, so no advisory lock or extra
round trip is needed):

- while a run is in flight the row holds ``lease_owner = <replica>`` and ``lease_until = now + ttl``, renewed by
  a heartbeat; a replica that crashes stops renewing and its lease expires after ``ttl``;
- when a run ends the owner is cleared and ``lease_until`` is left at a *cooldown*: the start of the next schedule
  slot (later while the source is quarantined). A scheduled claim needs ``lease_until`` in the past, so when every
  replica fires for the same slot exactly one of them runs it; a manual trigger ignores the cooldown but never an
  owner's live lease;
- a run abandoned at shutdown (past ``shutdown_timeout``) releases its lease with no cooldown, so the restarted
  service redoes it at once; a lease whose owner is a process of this host that no longer exists (SIGKILL, OOM) is
  freed at start-up (:func:`free_dead_local`); any other owner's lease is waited out (docs/architecture.md,
  "Running it").

An owner id is ``<host>/<pid namespace>:<pid>:<random>``: the host name and PID namespace say whether a pid can be
checked here at all (two containers may share a host name but not a PID namespace).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta

from syncd.store import dialect
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


def pid_namespace() -> str:
    """This process's PID namespace (its inode, from /proc/self/ns/pid), ``0`` when /proc does not say: a pid means
    the same process only within one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]") or "0"
    except OSError:
        return "0"


def this_host() -> str:
    """The host name and PID namespace in which pids of owner ids mean this host's processes."""
    return f"{socket.gethostname()}/{pid_namespace()}"


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists in this PID namespace (one of another user still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def owner_id() -> str:
    """A new replica's owner id: ``<host>/<pid namespace>:<pid>:<random>`` (the random part tells restarts that
    reuse a pid apart)."""
    return f"{this_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def dead_local_owner(owner: str, host: str | None = None) -> bool:
    """True when ``owner`` names a process of this host and PID namespace that no longer exists."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    where, pid_text, _ = parts
    if where != (host or this_host()) or not pid_text.isdigit():
        return False
    return process_gone(int(pid_text))


def free_dead_local(now: datetime) -> list[tuple[str, str]]:
    """Free every lease held by a dead process of this host (a replica killed with SIGKILL or by the OOM killer
    never released it), so the restarted service runs at once instead of waiting the lease out. Each is freed with
    a compare-and-set on the owner it had; returns (source, former owner) pairs."""
    host = this_host()
    freed = []
    held = Source.select(Source.name, Source.lease_owner).where(Source.lease_owner.is_null(False)).tuples()
    for name, owner in list(held):
        if dead_local_owner(owner, host):
            changed = (
                Source.update(lease_owner=None, lease_until=now)
                .where((Source.name == name) & (Source.lease_owner == owner))
                .execute()
            )
            if changed == 1:
                freed.append((name, owner))
    return freed


def running(sources: list[str], now: datetime) -> set[str]:
    """Those of ``sources`` whose lease a run holds now, in any process of any replica (a released lease has no
    owner; a crashed holder's counts until it expires)."""
    held = (
        Source.select(Source.name)
        .where(Source.name.in_(sources) & Source.lease_owner.is_null(False) & (Source.lease_until > now))
        .tuples()
    )
    return {name for (name,) in held}


def holder(source: str) -> tuple[str | None, datetime | None]:
    """The source's lease owner (None when no run holds it) and ``lease_until``."""
    row = Source.select(Source.lease_owner, Source.lease_until).where(Source.name == source).tuples().first()
    return (row[0], row[1]) if row else (None, None)


DECLARE_LOCK_KEY = 7362002


@contextlib.contextmanager
def declaration_lock() -> Iterator[None]:
    """Serialize declaring the config's orgs and sources across replicas starting at once (PostgreSQL).

    Declaring is check-then-insert; two replicas doing it together would both insert an org. A session-level
    advisory lock (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS) makes them take
    turns; SQLite needs none, its write transactions already serialize (``BEGIN IMMEDIATE``).
    """
    with dialect.of().session_lock(DECLARE_LOCK_KEY):
        yield
