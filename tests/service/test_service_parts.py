"""The service's parts in-process: structured logs, sd_notify, leases on both stores, backoff, the web app."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import socket
import subprocess
from datetime import datetime, timedelta

import pytest

from syncd import logs
from syncd.config import Config, ServerSettings
from syncd.logs import bound, log_event
from syncd.service import notify
from syncd.service.scheduler import EPOCH, SourceScheduler, build_trigger
from syncd.store import lease
from syncd.store.models import Organization, Source

SECRET = "syncd_Q2hvb3NlIGEgcmVhbCB0b2tlbiB3aXRoIDI1NiBiaXRz"


@pytest.fixture
def captured():
    stream = io.StringIO()

    def configure(fmt: str) -> io.StringIO:
        logs.configure(fmt, "debug", stream)
        return stream

    yield configure
    logs.configure("logfmt", "warning")


def test_json_log_is_one_object_per_line_with_bound_context(captured):
    stream = captured("json")
    with bound(org="acme", source="hr", run="r1"):
        log_event(logging.getLogger("t"), "source.run.ok", duration_ms=5, note="two\nlines")
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert (event["event"], event["org"], event["source"], event["run"]) == ("source.run.ok", "acme", "hr", "r1")
    assert event["duration_ms"] == 5


def test_logfmt_quotes_values_with_spaces_and_never_splits_lines(captured):
    stream = captured("logfmt")
    log_event(logging.getLogger("t"), "config.reload.refused", reason='bad "value" = here\nsecond')
    (line,) = stream.getvalue().splitlines()
    assert 'reason="bad \\"value\\" = here second"' in line
    assert " event=config.reload.refused " in line


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_secrets_never_reach_the_log_whatever_the_field_or_message(captured, fmt):
    stream = captured(fmt)
    log = logging.getLogger("t")
    log_event(log, "x", token=SECRET, client_secret="s3cr3t-value", bind_password="hunter2-pw", authorization="x")
    log_event(log, "y", detail=f"request with Authorization: Bearer {SECRET}", url="ldap://h?password=hunter2-pw")
    log.warning(f"free text with {SECRET}")
    try:
        raise ValueError(f"connect failed with token {SECRET} and Basic dXNlcjpodW50ZXIyLXB3")
    except ValueError as error:
        log.error("z", exc_info=error)
    text = stream.getvalue()
    for secret in (SECRET, "s3cr3t-value", "hunter2-pw", "dXNlcjpodW50ZXIyLXB3"):
        assert secret not in text
    assert text.count(logs.REDACTED) >= 7
    assert len(text.splitlines()) == 4


def test_notify_sends_states_to_the_socket_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify.notify("READY=1", "STATUS=serving")
        assert server.recv(100) == b"READY=1\nSTATUS=serving"


def test_notify_reaches_an_abstract_socket_and_is_a_no_op_without_systemd(monkeypatch):
    name = f"syncd-test-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.notify("WATCHDOG=1")
        assert server.recv(100) == b"WATCHDOG=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify.notify("READY=1") is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_interval() is None


def _source(name: str = "hr") -> Source:
    org = Organization.create(slug="acme", name="Acme", created_at=datetime(2026, 1, 1))
    return Source.create(org=org, name=name, kind="file")


def test_only_one_owner_holds_a_lease_until_it_expires(store):
    _source()
    now = datetime(2026, 1, 1, 12)
    assert lease.claim("hr", "a", now, 30)
    assert not lease.claim("hr", "b", now + timedelta(seconds=29), 30)
    assert not lease.claim("hr", "b", now, 30, scheduled=False)
    assert lease.renew("hr", "a", now + timedelta(seconds=20), 30)
    assert not lease.claim("hr", "b", now + timedelta(seconds=45), 30)
    assert lease.claim("hr", "b", now + timedelta(seconds=51), 30), "a crashed owner's lease expires"
    assert not lease.renew("hr", "a", now + timedelta(seconds=52), 30), "the old owner learns it lost the lease"
    assert not lease.release("hr", "a", now)


def test_only_leases_of_dead_processes_of_this_host_are_freed_at_start(store):
    org = _source().org
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists (reaped)
    here = lease.this_host()
    owners = {
        "hr": f"{here}:{dead.pid}:aaaaaa",
        "alive": f"{here}:{os.getpid()}:bbbbbb",
        "elsewhere": f"other-host/{here.split('/')[1]}:{dead.pid}:cccccc",
        "other-pid-namespace": f"{here.split('/')[0]}/1:{dead.pid}:dddddd",
    }
    until = datetime(2026, 1, 1, 12, 1)
    for name, owner in owners.items():
        if name != "hr":
            Source.create(org=org, name=name, kind="file")
        Source.update(lease_owner=owner, lease_until=until).where(Source.name == name).execute()
    now = datetime(2026, 1, 1, 12)

    assert lease.free_dead_local(now) == [("hr", owners["hr"])]
    assert lease.holder("hr") == (None, now), "free at once, no cooldown"
    assert {name: lease.holder(name)[0] for name in owners if name != "hr"} == {
        name: owner for name, owner in owners.items() if name != "hr"
    }
    assert lease.claim("hr", "new", now, 30)


def test_a_released_lease_cools_down_scheduled_claims_but_not_manual_ones(store):
    _source()
    now = datetime(2026, 1, 1, 12)
    assert lease.claim("hr", "a", now, 30)
    assert lease.release("hr", "a", now + timedelta(seconds=60))
    assert not lease.claim("hr", "b", now + timedelta(seconds=59), 30)
    assert lease.claim("hr", "b", now + timedelta(seconds=1), 30, scheduled=False)
    assert lease.release("hr", "b", now + timedelta(seconds=60))
    assert lease.claim("hr", "a", now + timedelta(seconds=60), 30)


def test_interval_slots_are_aligned_to_the_epoch_so_replicas_share_them():
    fired, plain, period = build_trigger("15m", "s")
    assert period == 900
    moment = datetime(2026, 3, 4, 10, 7, 12, tzinfo=EPOCH.tzinfo)
    assert plain.get_next_fire_time(None, moment) == moment.replace(minute=15, second=0)
    assert fired.jitter == 60.0


def _fire_times(trigger, start: datetime, count: int) -> list[datetime]:
    """Fire times as APScheduler asks for them: each from the previous (jittered) fire time, at that moment."""
    times, previous, now = [], None, start
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, now)
        times.append(previous)
        now = previous
    return times


@pytest.mark.parametrize("schedule", ["15s", "15m", "*/5 * * * *"])
def test_each_run_is_jittered_around_its_own_slot_so_jitter_never_accumulates(schedule):
    fired, plain, period = build_trigger(schedule, "s")
    fired.rng = random.Random(12)
    start = datetime(2026, 3, 4, 10, 7, 12, 345678, tzinfo=EPOCH.tzinfo)
    first_slot = plain.get_next_fire_time(None, start)
    times = _fire_times(fired, start, 500)
    for k, fired_at in enumerate(times):
        slot = first_slot + timedelta(seconds=k * period)
        assert slot <= fired_at <= slot + timedelta(seconds=fired.jitter), (k, slot, fired_at)
    offsets = [(t - (first_slot + timedelta(seconds=k * period))).total_seconds() for k, t in enumerate(times)]
    assert max(offsets) > fired.jitter / 2, "the jitter is used, not left out"


def test_a_catch_up_fire_between_slots_is_followed_by_the_next_slot_not_a_period_later():
    fired, _, _ = build_trigger("1h", "s")
    fired.rng = random.Random(3)
    catch_up = datetime(2026, 3, 4, 10, 59, 0, tzinfo=EPOCH.tzinfo)
    following = fired.get_next_fire_time(catch_up, catch_up)
    slot = datetime(2026, 3, 4, 11, 0, 0, tzinfo=EPOCH.tzinfo)
    assert slot <= following <= slot + timedelta(seconds=fired.jitter)


def test_cron_schedule_period_is_the_gap_between_fire_times():
    _, _, period = build_trigger("*/5 * * * *", "s")
    assert period == 300


def test_quarantine_backoff_doubles_and_is_capped():
    config = Config(server=ServerSettings(quarantine_after=3, max_backoff="1h"))
    scheduler = SourceScheduler(config, run=lambda *a, **k: None)
    assert [scheduler.backoff(f, 60) for f in (0, 2, 3, 4, 5, 9)] == [0, 0, 60, 180, 420, 3600]
    assert not scheduler.quarantined(2) and scheduler.quarantined(3)


def test_readyz_names_the_failing_check_and_healthz_stays_up(store):
    from syncd.service.http_apps import ServiceState, create_app, create_metrics_app

    config = Config()
    state = ServiceState(config=config)
    client = create_app(config, state, with_scim=False).test_client()
    assert client.get("/healthz").status_code == 200
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"] == {"store": "ok", "migrations": "ok", "scheduler": "not started"}
    state.draining = True
    assert client.get("/readyz").json["checks"]["scheduler"] == "draining"
    assert client.get("/metrics").status_code == 404  # served on the metrics listener only
    metrics = create_metrics_app(state).test_client().get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'syncd_http_requests_total{endpoint="/readyz",method="GET",status="503"}' in metrics.text


def test_each_request_gets_an_id_bound_to_its_log_events(store, captured):
    from syncd.service.http_apps import ServiceState, create_app

    stream = captured("json")
    config = Config()
    client = create_app(config, ServiceState(config=config), with_scim=False).test_client()
    given = client.post("/admin/v1/sources/hr/sync", headers={"X-Request-Id": "abc-123"})
    made = client.post("/admin/v1/sources/hr/sync", headers={"X-Request-Id": "bad id with spaces"})
    assert given.headers["X-Request-Id"] == "abc-123"
    assert made.headers["X-Request-Id"] != "bad id with spaces"
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests_logged = [e for e in events if e["event"] == "http.request"]
    assert [e["request"] for e in requests_logged] == ["abc-123", made.headers["X-Request-Id"]]
    assert all(e["status"] == 401 for e in requests_logged)


def test_scim_hot_routes_are_counted_logged_and_given_a_request_id_as_flask_routes_are(store, captured):
    """SCIM's hot routes (scim.web.HotRoutes) answer without Flask's request hooks; the request observer gives
    them the same id, log context, counters and http.request line."""
    from syncd.service import metrics
    from syncd.service.http_apps import ServiceState, create_app

    stream = captured("json")
    config = Config()
    client = create_app(config, ServiceState(config=config)).test_client()
    counted = metrics.http_requests.labels("GET", "/scim/v2/Users/<id>", "401")
    before = counted._value.get()
    given = client.get("/scim/v2/Users/abc", headers={"X-Request-Id": "scim-1"})
    made = client.get("/scim/v2/ServiceProviderConfig", headers={"X-Request-Id": "bad id"})
    assert given.status_code == 401 and given.headers["X-Request-Id"] == "scim-1"
    assert made.status_code == 200 and made.headers["X-Request-Id"] not in ("", "bad id")
    assert counted._value.get() == before + 1
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = [(e["event"], e["request"], e.get("endpoint")) for e in events if e["event"].startswith(("http", "scim"))]
    assert logged == [
        ("scim.request.refused", "scim-1", None),
        ("http.request", "scim-1", "/scim/v2/Users/<id>"),
        ("http.request", made.headers["X-Request-Id"], "/scim/v2/ServiceProviderConfig"),
    ]


def test_a_run_process_that_dies_mid_transaction_is_a_failed_run_that_changed_nothing(sqlite_store, sqlite_url):
    from syncd.config import DatabaseSettings, SourceSettings
    from tests.service import runs

    _source()
    config = Config(
        database=DatabaseSettings(url=sqlite_url),
        sources=(SourceSettings(name="hr", org="acme", kind="file", connector=None),),
    )
    scheduler = SourceScheduler(config, run=runs.crash)

    outcome = scheduler.run_now("hr")

    assert outcome.result == "failed"
    assert "ended with exit code 3" in outcome.error
    assert runs.RunStep.select().count() == 0
    row = Source.get(Source.name == "hr")
    assert (row.consecutive_failures, row.last_error, row.lease_owner) == (1, outcome.error, None)


def test_scim_catch_all_routes_are_labelled_by_resource_endpoint_not_by_path():
    from flask import Flask

    from syncd.service.http_apps import endpoint_label

    app = Flask("t")
    app.add_url_rule("/scim/v2/<path:path>", "scim", lambda path: "")
    app.add_url_rule("/healthz", "healthz", lambda: "")
    cases = {
        "/scim/v2/Users": "/scim/v2/Users",
        "/scim/v2/Users/2819c223-7f76-453a-919d-413861904646": "/scim/v2/Users/<id>",
        "/scim/v2/Groups/.search": "/scim/v2/Groups/.search",
        "/scim/v2/ServiceProviderConfig": "/scim/v2/ServiceProviderConfig",
        "/scim/v2/secret-probe/x": "/scim/v2/<other>",
        "/healthz": "/healthz",
        "/nowhere": "unmatched",
    }
    for path, label in cases.items():
        with app.test_request_context(path):
            assert endpoint_label() == label, path
