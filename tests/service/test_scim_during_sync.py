"""SCIM never waits behind a sync on SQLite: while a first sync of several apply batches runs in a real
``syncd serve``, SCIM writes to the same org keep succeeding, and they are applied between the sync's batches
(their ledger entries fall inside the sync's run of entries), not after it. Real command, HTTP, reconciler and
file connector; sized to take four batches of ``pipeline.BATCH_MEMBERS``."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable
from pathlib import Path

from syncd.store.models import LedgerEntry, Organization
from syncd.sync import pipeline
from tests.service.scim_push import Idp, acme_config, token

PEOPLE = 3 * pipeline.BATCH_MEMBERS + 1
AFTER_STAGE_WRITES = 3
"""SCIM writes answered between the end of the sync's stage and its first batch (its plan and moves: a second or
so at this size); none when the stage, plan and first batch are one transaction."""
ORG = """[orgs.policy]
guard_max_percent = 100
guard_max_count = 1000000
"""
SOURCE = """
[[sources]]
name = "hr"
org = "acme"
kind = "file"
schedule = "1d"
path = "{path}"
"""


def write_people(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["employee id", "email", "name", "groups"])
        for i in range(PEOPLE):
            writer.writerow([f"E{i:06d}", f"person{i:06d}@acme.com", f"Person {i:06d}", f"Group {i % 50:02d}"])


def _serve_before_the_source(serve, tmp_path: Path, cli) -> tuple[Idp, Path, str, Path]:
    """A running ``syncd serve`` of org acme with no source yet, its SCIM client, the config (path and text) and the
    big people file the source added later reads."""
    config = tmp_path / "syncd.toml"
    text = acme_config(f"sqlite:///{tmp_path / 's.db'}", org=ORG)
    config.write_text(text, encoding="utf-8")
    people = tmp_path / "people.csv"
    write_people(people)
    idp = Idp(serve(config, run=None), token(cli, config))
    idp.service.wait_ready()
    return idp, config, text, people


def _join(idp: Idp, email: str) -> int:
    """POST a new user (a member join, ledgered); the HTTP status."""
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "emails": [{"value": email, "primary": True}],
        "active": True,
    }
    answer = idp.service.http.post(
        idp.service.url("/scim/v2/Users"),
        json=body,
        headers={"Authorization": f"Bearer {idp.token}", "Content-Type": "application/scim+json"},
        timeout=60,
    )
    return answer.status_code


def _first_sync_while(
    idp: Idp, config: Path, text: str, people: Path, push: Callable[[int, threading.Event], None], clients: int
) -> None:
    """Add the source (SIGHUP: it runs at once) while ``clients`` threads ``push(client, sync_done)``; wait for it."""
    sync_done = threading.Event()
    pushers = [threading.Thread(target=push, args=(client, sync_done)) for client in range(clients)]
    for pusher in pushers:
        pusher.start()
    try:
        config.write_text(text + SOURCE.format(path=people), encoding="utf-8")
        idp.service.signal(1)
        ok = idp.service.wait_event("source.run.ok", timeout=300, where=lambda e: e.get("source") == "hr")
    finally:
        sync_done.set()
        for pusher in pushers:
            pusher.join(120)
    assert ok


def test_scim_writes_succeed_and_interleave_with_the_batches_of_a_big_first_sync(serve, tmp_path, cli):
    idp, config, text, people = _serve_before_the_source(serve, tmp_path, cli)
    statuses: list[int] = []
    after_staged: list[str] = []

    def push(_client: int, sync_done: threading.Event) -> None:
        # Writes before, during and just after the sync: each a new user (a member join, ledgered).
        number = 0
        while not sync_done.is_set() or number < 5:
            if after_staged or idp.service.events("source.run.staged"):
                after_staged.append(f"member:scim{number:05d}@acme.com")
            statuses.append(_join(idp, f"scim{number:05d}@acme.com"))
            number += 1

    _first_sync_while(idp, config, text, people, push, clients=1)
    assert statuses and set(statuses) == {201}, sorted(set(statuses))

    org = Organization.get(Organization.slug == "acme")
    entries = list(
        LedgerEntry.select(LedgerEntry.seq, LedgerEntry.actor, LedgerEntry.target)
        .where(LedgerEntry.org == org.id, LedgerEntry.action == "member.join")
        .tuples()
    )
    scim = {target: seq for seq, actor, target in entries if actor.startswith("token:")}
    sync = [seq for seq, actor, _ in entries if not actor.startswith("token:")]
    assert len(sync) == PEOPLE
    between = [seq for seq in scim.values() if min(sync) < seq < max(sync)]
    assert between, "every SCIM write waited for the whole sync"
    # Sent once the run had staged its read and applied before its first batch: answered while the sync planned
    # and moved its staged rows into the store, which holds no write lock for long (docs/architecture.md, "Batches").
    after_stage = [target for target in after_staged if scim[target] < min(sync)]
    assert len(after_stage) >= AFTER_STAGE_WRITES, (len(after_stage), len(after_staged))


def test_concurrent_scim_writers_all_succeed_while_a_big_first_sync_runs(serve, tmp_path, cli):
    """Four IdP clients writing at once (threads of ``serve`` in line behind one another and behind the sync's run
    process at the writers' gate, syncd.store.write_gate): every write is answered 201 and stored."""
    idp, config, text, people = _serve_before_the_source(serve, tmp_path, cli)
    statuses: list[int] = []

    def push(client: int, sync_done: threading.Event) -> None:
        number = 0
        while not sync_done.is_set() or number < 3:
            statuses.append(_join(idp, f"c{client}-{number:05d}@acme.com"))
            number += 1

    _first_sync_while(idp, config, text, people, push, clients=4)
    assert len(statuses) >= 4 * 3 and set(statuses) == {201}, sorted(set(statuses))
    org = Organization.get(Organization.slug == "acme")
    joined = (
        LedgerEntry.select()
        .where(LedgerEntry.org == org.id, LedgerEntry.action == "member.join", LedgerEntry.actor.startswith("token:"))
        .count()
    )
    assert joined == len(statuses)
