"""A restart finishes the job: a run cut short by the service's end is redone by the restarted service within the
lease period, not at the next slot (an hour here).

Each test starts real ``syncd serve`` processes on one store with the slow test run function
(``tests.service.runs:slow``, which stands in for the pipeline so that a run is in flight long enough to be cut).
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta

from syncd.clock import iso
from syncd.service.scheduler import RETRY_MARGIN
from syncd.store import open_database
from syncd.store.db import database
from syncd.store.models import Source
from tests.service.conftest import service_config

SLOW = {"SYNCD_TEST_STEPS": "40", "SYNCD_TEST_DELAY": "0.25"}


def _lease(url: str) -> tuple[str | None, datetime | None]:
    open_database(url)
    try:
        row = Source.get(Source.name == "hr")
        return row.lease_owner, row.lease_until
    finally:
        database.obj.close()


def _hold_elsewhere(url: str, owner: str, seconds: float) -> datetime:
    """Renew the source's lease as the live replica ``owner`` on another host would: held for ``seconds`` from now."""
    until = datetime.utcnow() + timedelta(seconds=seconds)
    open_database(url)
    try:
        Source.update(lease_owner=owner, lease_until=until).where(Source.name == "hr").execute()
    finally:
        database.obj.close()
    return until


def _config(tmp_path, url: str, lease_seconds: int, schedule: str = "1h"):
    config = tmp_path / "syncd.toml"
    server = f"shutdown_timeout = 1\nlease_seconds = {lease_seconds}"
    config.write_text(service_config(url, {"hr": schedule}, server=server, folder=tmp_path), encoding="utf-8")
    return config


def test_sigterm_past_the_timeout_releases_the_lease_and_the_restart_runs_at_once(serve, tmp_path, store, database_url):
    config = _config(tmp_path, database_url, lease_seconds=30)
    first = serve(config, **SLOW)
    first.wait_event("source.run.start")

    first.signal(signal.SIGTERM)
    assert first.wait() == 1
    owner, until = _lease(database_url)
    assert owner is None, "the abandoned run's lease was released on the way out"
    assert until is not None and until <= datetime.utcnow(), "with no cooldown"

    second = serve(config, **SLOW)
    second.wait_event("source.run.start", timeout=30)  # the lease period; the next slot is an hour away
    assert not second.events("source.run.skipped")


def test_a_lease_held_by_a_killed_process_of_this_host_is_free_at_start(serve, tmp_path, store, database_url):
    config = _config(tmp_path, database_url, lease_seconds=30)
    first = serve(config, **SLOW)
    first.wait_event("source.run.start")

    first.signal(signal.SIGKILL)
    first.wait()
    owner, _ = _lease(database_url)
    assert owner is not None and f":{first.process.pid}:" in owner, "SIGKILL left the lease held"

    second = serve(config, **SLOW)
    (freed,) = second.wait_event("source.lease.freed")
    assert (freed["source"], freed["former_owner"], freed["level"]) == ("hr", owner, "info")
    second.wait_event("source.run.start", timeout=30)
    assert not second.events("source.run.skipped")


def test_a_catch_up_run_skipped_for_a_live_looking_lease_is_retried_when_it_expires(
    serve, tmp_path, store, database_url
):
    """The killed holder is made to look like a replica on another host (its owner id rewritten), whose process
    this one cannot check: the restart must wait the lease out, then run, not wait for the next slot.

    The test is that other replica: it keeps renewing the lease, as a live replica's heartbeat does, until the
    restarted service has skipped its catch-up run, and then stops, as a replica that died would; so the lease is
    live when the restart claims however long the restart takes to start, and its expiry is the test's last renewal.
    The schedule is daily so that the next slot (midnight UTC) never comes before the lease's expiry."""
    config = _config(tmp_path, database_url, lease_seconds=6, schedule="1d")
    elsewhere = "elsewhere/4026531836:4242:abcdef"
    first = serve(config, **SLOW)
    first.wait_event("source.run.start")
    first.signal(signal.SIGKILL)
    first.wait()

    until = _hold_elsewhere(database_url, elsewhere, seconds=6)
    second = serve(config, **SLOW)
    deadline = time.monotonic() + 60
    while not second.events("source.run.skipped"):
        assert second.process.poll() is None and time.monotonic() < deadline, second.log_text()
        assert not second.events("source.run.start"), "the restart took a live lease"
        time.sleep(0.2)
        until = _hold_elsewhere(database_url, elsewhere, seconds=6)
    skipped = second.events("source.run.skipped")[0]
    assert (skipped["level"], skipped["owner"]) == ("info", elsewhere)
    assert skipped["ts"] < skipped["retry_at"] <= iso(until + RETRY_MARGIN), "retried when the lease expires"
    (started,) = second.wait_event("source.run.start", timeout=30)
    assert started["ts"] >= iso(until), "the other holder's lease was waited out, not taken"
    assert started["ts"] >= skipped["retry_at"]
