"""Operating a running ``syncd serve``: quarantine and recovery, metrics, the admin API, redacted logs."""

from __future__ import annotations

import json
import re
import time

import pytest

from syncd.service.admin_client import ServiceError, trigger_sync
from tests.service.conftest import service_config
from tests.service.runs import recorded


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def _token(cli, config, org: str, scope: str) -> str:
    result = cli("--config", str(config), "tokens", "create", "--org", org, "--scope", scope)
    assert result.code == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_a_failing_source_is_quarantined_with_one_alert_then_recovers(serve, tmp_path, cli):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    server = 'quarantine_after = 2\nmax_backoff = "2s"'
    config.write_text(service_config(url, {"hr": "1s"}, server=server, folder=tmp_path))
    admin = _token(cli, config, "acme", "admin")
    failing = tmp_path / "fail"
    failing.touch()
    service = serve(config, SYNCD_TEST_FAIL_FILE=str(failing), SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="0")

    service.wait_event("source.run.error", count=3)
    quarantined = service.events("source.quarantined")
    assert len(quarantined) == 1 and quarantined[0]["source"] == "hr" and quarantined[0]["failures"] == 2
    metrics = service.metrics().text
    assert _metric(metrics, "syncd_source_quarantined", source="hr") == 1
    assert _metric(metrics, "syncd_source_consecutive_failures", source="hr") >= 2
    (state,) = service.get("/admin/v1/sources", headers={"Authorization": f"Bearer {admin}"}).json()
    assert state["quarantined"] is True
    assert "bind to ldap://127.0.0.1:1 failed" in state["last_error"]
    assert "hunter2" not in state["last_error"]

    failing.unlink()
    (recovered,) = service.wait_event("source.recovered", timeout=30)
    assert recovered["source"] == "hr"
    metrics = service.metrics().text
    assert _metric(metrics, "syncd_source_quarantined", source="hr") == 0
    assert _metric(metrics, "syncd_source_last_success_timestamp_seconds", source="hr") is not None
    assert len(service.events("source.quarantined")) == 1
    assert "hunter2" not in service.log_text()


def test_metrics_move_with_http_traffic_and_source_runs(serve, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1s"}, server='webhook_every = "1s"', folder=tmp_path))
    service = serve(config, SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="0")
    service.wait_ready()
    before = service.metrics().text
    healthz_before = _metric(before, "syncd_http_requests_total", endpoint="/healthz", status="200") or 0

    for _ in range(3):
        assert service.get("/healthz").status_code == 200
    assert service.get("/no/such/page").status_code == 404
    service.wait_event("source.run.ok", count=2)

    after = service.metrics().text
    assert _metric(after, "syncd_http_requests_total", endpoint="/healthz", method="GET", status="200") == (
        healthz_before + 3
    )
    assert _metric(after, "syncd_http_requests_total", endpoint="unmatched", status="404") == 1
    assert _metric(after, "syncd_http_request_duration_seconds_count", endpoint="/healthz") == healthz_before + 3
    assert _metric(after, "syncd_source_runs_total", source="hr", result="ok") >= 2
    assert _metric(after, "syncd_source_run_duration_seconds_count", source="hr", result="ok") >= 2
    assert _metric(after, "syncd_ledger_head_seq", org="acme") >= 1
    assert _metric(after, "syncd_plans_held", org="acme") == 0
    assert _metric(after, "syncd_store_up") == 1
    # The orgs' own org.create events wait for the webhook tick (every second here), which marks them done: no webhooks.
    deadline = time.monotonic() + 30
    while _metric(service.metrics().text, "syncd_outbox_backlog") != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _metric(service.metrics().text, "syncd_outbox_backlog") == 0


def test_admin_sync_runs_a_source_now_for_its_own_org_only(serve, tmp_path, cli):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1h"}, folder=tmp_path))
    admin = _token(cli, config, "acme", "admin")
    other_admin = _token(cli, config, "other", "admin")
    scim = _token(cli, config, "acme", "scim")
    service = serve(config, SYNCD_TEST_STEPS="2", SYNCD_TEST_DELAY="0")
    service.wait_ready()
    base = service.url("")
    first_run = service.wait_event("source.run.ok")  # the first slot of a never-run source is due at start
    assert len(first_run) == 1

    answer = trigger_sync(base, admin, "hr", full=True)

    assert answer["result"] == "ok" and answer["full"] is True and answer["error"] is None
    assert len({row["run"] for row in recorded(url)}) == 2
    started = service.events("source.run.start")[-1]
    assert started["actor"].startswith("token:") and started["run"] == answer["run_id"]
    with pytest.raises(ServiceError, match="no source named 'hr' in this organization"):
        trigger_sync(base, other_admin, "hr")
    with pytest.raises(ServiceError, match="scope 'admin'"):
        trigger_sync(base, scim, "hr")
    with pytest.raises(ServiceError, match="valid bearer token"):
        trigger_sync(base, "syncd_not-a-real-token-at-all", "hr")
    assert admin not in service.log_text() and "syncd_not-a-real" not in service.log_text()
    assert service.post("/admin/v1/sources/hr/sync").status_code == 401


def test_syncd_sync_remote_asks_the_running_service_to_run_the_source(serve, tmp_path, cli, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1h"}, folder=tmp_path))
    admin = _token(cli, config, "acme", "admin")
    service = serve(config, SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="0")
    service.wait_ready()
    service.wait_event("source.run.ok")
    client_config = tmp_path / "client.toml"
    client_config.write_text(f'[database]\nurl = "{url}"\n\n[server]\npublic_url = "{service.url("")}"\n')

    missing = cli("--config", str(client_config), "sync", "hr", "--remote")
    assert missing.code == 1 and "SYNCD_ADMIN_TOKEN_FILE" in missing.stderr

    token_file = tmp_path / "admin.token"
    token_file.write_text(admin + "\n")
    monkeypatch.setenv("SYNCD_ADMIN_TOKEN_FILE", str(token_file))
    remote = cli("--config", str(client_config), "sync", "hr", "--remote", "--format", "json")

    assert remote.code == 0, remote.stderr
    answer = json.loads(remote.stdout)
    assert answer["result"] == "ok" and answer["source"] == "hr"
    assert len({row["run"] for row in recorded(url)}) == 2
    assert service.events("source.run.start")[-1]["run"] == answer["run_id"]
    unknown = cli("--config", str(client_config), "sync", "nope", "--remote")
    assert unknown.code == 1 and "no source named 'nope'" in unknown.stderr
