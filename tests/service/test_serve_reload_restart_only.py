"""A reload applies what it can and names what it cannot: ``syncd serve`` reads its listeners, processes, threads
and periodic jobs' periods only at start, so a SIGHUP that changes one of them logs one
``config.reload.restart_needed`` line per such setting (issue: they were silently kept) while every other change
takes effect."""

from __future__ import annotations

import json
import signal

from syncd.store import open_database
from syncd.store.db import database
from syncd.store.models import Organization

STARTED = {
    "listen": '"127.0.0.1:8080"',
    "processes": "1",
    "workers": "8",
    "housekeeping_every": '"15m"',
    "webhook_every": '"10s"',
    "lease_seconds": "60",
}
CHANGED = {
    "listen": '"127.0.0.1:8181"',
    "processes": "2",
    "workers": "8",
    "housekeeping_every": '"5m"',
    "webhook_every": '"10s"',
    "lease_seconds": "30",
}


def _config(database_url: str, server: dict[str, str], grace_days: int) -> str:
    settings = "".join(f"{key} = {value}\n" for key, value in server.items())
    return (
        f'[database]\nurl = "{database_url}"\n\n[server]\n{settings}\n[logging]\nformat = "json"\n\n'
        f'[[orgs]]\nslug = "acme"\nname = "Acme"\n[orgs.policy]\ngrace_days = {grace_days}\n'
    )


def _grace_days(database_url: str) -> int:
    open_database(database_url)
    try:
        return json.loads(Organization.get(Organization.slug == "acme").policy)["grace_days"]
    finally:
        database.obj.close()


def test_a_reload_names_each_changed_setting_it_cannot_apply_and_applies_the_rest(serve, tmp_path, store, database_url):
    config = tmp_path / "syncd.toml"
    config.write_text(_config(database_url, STARTED, grace_days=30), encoding="utf-8")
    service = serve(config, run=None)
    service.wait_ready()

    config.write_text(_config(database_url, CHANGED, grace_days=7), encoding="utf-8")
    service.signal(signal.SIGHUP)
    service.wait_event("config.reloaded")

    named = {e["setting"]: e for e in service.events("config.reload.restart_needed")}
    assert sorted(named) == ["server.housekeeping_every", "server.listen", "server.processes"], "only changed ones"
    listen = named["server.listen"]
    assert (listen["level"], listen["running"], listen["configured"]) == ("warning", "127.0.0.1:8080", "127.0.0.1:8181")
    assert "restart syncd to apply it" in listen["action"]
    assert (named["server.processes"]["running"], named["server.processes"]["configured"]) == (1, 2)
    assert _grace_days(database_url) == 7, "the rest of the config was applied"
    assert service.get("/readyz").status_code == 200, "still serving where it started"

    service.signal(signal.SIGHUP)
    service.wait_event("config.reloaded", count=2)
    again = [e["setting"] for e in service.events("config.reload.restart_needed")]
    assert sorted(again) == sorted(list(named) * 2), "still not applied, so named again at the next reload"
