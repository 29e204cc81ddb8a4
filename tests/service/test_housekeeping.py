"""The scheduler's housekeeping: orgs re-planned from their staged state, and the webhook outbox drained."""

from __future__ import annotations

from datetime import timedelta

from syncd import config
from syncd.admin import shell
from syncd.clock import utcnow
from syncd.service.scheduler import SourceScheduler
from syncd.store.models import LedgerEntry, Member, OutboxEvent
from syncd.sync.pipeline import run_source

HEADER = "email,name,groups\n"


def _start(tmp_path, database_url):
    people = tmp_path / "people.csv"
    people.write_text(HEADER + "ada@acme.com,Ada,Owners\nbob@acme.com,Bob,\n", encoding="utf-8")
    cfg = config.parse(
        {
            "database": {"url": database_url},
            "orgs": [
                {
                    "slug": "acme",
                    "domains": ["acme.com"],
                    "policy": {"grace_days": 1, "guard_max_percent": 100, "guard_max_count": 100},
                    "rules": [{"group": "Owners", "role": "owner"}],
                }
            ],
            "sources": [{"name": "hr", "org": "acme", "kind": "file", "path": str(people)}],
        }
    )
    shell.start(config=cfg)
    run_source(cfg, "hr")
    people.write_text(HEADER + "ada@acme.com,Ada,Owners\n", encoding="utf-8")
    run_source(cfg, "hr")
    return cfg


def test_housekeeping_deprovisions_after_the_grace_period_once_across_replicas(tmp_path, store, database_url):
    cfg = _start(tmp_path, database_url)
    assert Member.get(Member.email == "bob@acme.com").status == "suspended"
    later = utcnow() + timedelta(days=2)
    first = SourceScheduler(cfg, isolate=False, owner="replica-a", clock=lambda: later)
    second = SourceScheduler(cfg, isolate=False, owner="replica-b", clock=lambda: later)

    first.housekeep()
    second.housekeep()

    bob = Member.get(Member.email == "bob@acme.com")
    assert bob.status == "deprovisioned"
    entries = list(LedgerEntry.select().where(LedgerEntry.action == "member.deprovision"))
    assert len(entries) == 1 and entries[0].actor == "system:housekeeping"
    assert Member.get(Member.email == "ada@acme.com").status == "active"


def test_housekeeping_before_the_grace_period_changes_nothing(tmp_path, store, database_url):
    cfg = _start(tmp_path, database_url)
    entries = LedgerEntry.select().count()
    SourceScheduler(cfg, isolate=False).housekeep()
    assert LedgerEntry.select().count() == entries
    assert Member.get(Member.email == "bob@acme.com").status == "suspended"


def test_outbox_is_drained_even_with_no_webhook_configured(tmp_path, store, database_url):
    cfg = _start(tmp_path, database_url)
    assert OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count() > 0
    SourceScheduler(cfg, isolate=False).deliver_webhooks()
    assert OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count() == 0
