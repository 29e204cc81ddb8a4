"""A reload that ``syncd serve`` refuses changes nothing, in the store either (issue: a refused SIGHUP once left
``org.update`` and ``org.create`` in the ledger and the planner on the new grace period)."""

from __future__ import annotations

import json
import signal

from syncd.store import open_database
from syncd.store.db import database
from syncd.store.models import LedgerEntry, Organization, Source


def _config(database_url: str, *, grace_days: int, third_org: bool, hr_org: str) -> str:
    text = (
        f'[database]\nurl = "{database_url}"\n\n[logging]\nformat = "json"\n\n'
        f'[[orgs]]\nslug = "acme"\nname = "Acme"\n[orgs.policy]\ngrace_days = {grace_days}\n\n'
        '[[orgs]]\nslug = "other"\nname = "Other"\n\n'
    )
    if third_org:
        text += '[[orgs]]\nslug = "third"\nname = "Third"\n\n'
    return text + (
        f'[[sources]]\nname = "hr"\norg = "{hr_org}"\nkind = "file"\nschedule = "1h"\npath = "people.csv"\n\n'
    )


def _store_state(database_url: str) -> dict:
    """Orgs (slug → grace_days), sources (name → org) and ledger actions, read through the test's own connection."""
    open_database(database_url)
    try:
        orgs = {org.slug: json.loads(org.policy)["grace_days"] for org in Organization.select()}
        sources = {row.name: row.org.slug for row in Source.select()}
        ledger = [(entry.org.slug, entry.action) for entry in LedgerEntry.select().order_by(LedgerEntry.id)]
    finally:
        database.obj.close()
    return {"orgs": orgs, "sources": sources, "ledger": ledger}


def test_a_refused_reload_leaves_the_store_as_it_was(serve, tmp_path, store, database_url):
    (tmp_path / "people.csv").write_text("user_name,email\n", encoding="utf-8")
    config = tmp_path / "syncd.toml"
    config.write_text(_config(database_url, grace_days=30, third_org=False, hr_org="acme"), encoding="utf-8")
    service = serve(config, run=None)
    service.wait_ready()
    before = _store_state(database_url)
    assert before["orgs"] == {"acme": 30, "other": 30} and before["sources"]["hr"] == "acme"

    config.write_text(_config(database_url, grace_days=1, third_org=True, hr_org="third"), encoding="utf-8")
    service.signal(signal.SIGHUP)

    (refused,) = service.wait_event("config.reload.refused")
    assert "source 'hr' belonged to another org" in refused["reason"]
    assert _store_state(database_url) == before, "no org.update, no org.create, grace still 30"
    assert service.get("/readyz").status_code == 200

    config.write_text(_config(database_url, grace_days=1, third_org=True, hr_org="acme"), encoding="utf-8")
    service.signal(signal.SIGHUP)
    service.wait_event("config.reloaded")
    after = _store_state(database_url)
    assert after["orgs"] == {"acme": 1, "other": 30, "third": 30}
    assert after["ledger"][len(before["ledger"]) :] == [("acme", "org.update"), ("third", "org.create")]
