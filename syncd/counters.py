"""The event counters and histograms of this process (prometheus-client), in one registry: HTTP requests, source
runs, webhook sends, config reloads, SCIM writes held by the guard. Any layer may count an event here; the
exposition and the gauges read from the store at scrape time are :mod:`syncd.service.metrics` (docs/architecture.md,
"Contracts").
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from syncd import __version__

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RUN_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)

registry = CollectorRegistry()
http_requests = Counter(
    "syncd_http_requests_total",
    "HTTP requests by method, endpoint (route template) and status; SCIM endpoints start with /scim/v2.",
    ["method", "endpoint", "status"],
    registry=registry,
)
http_latency = Histogram(
    "syncd_http_request_duration_seconds",
    "HTTP request latency by method and endpoint (route template).",
    ["method", "endpoint"],
    buckets=LATENCY_BUCKETS,
    registry=registry,
)
source_runs = Counter(
    "syncd_source_runs_total",
    "Source runs by this replica, by result (ok, held, partial, failed).",
    ["source", "result"],
    registry=registry,
)
source_run_duration = Histogram(
    "syncd_source_run_duration_seconds",
    "Duration of source runs by this replica, by result.",
    ["source", "result"],
    buckets=RUN_BUCKETS,
    registry=registry,
)
run_start_failures = Counter(
    "syncd_source_run_start_failures_total",
    "Runs by this replica whose process ended before the run started (the run did nothing), by source.",
    ["source"],
    registry=registry,
)
run_start_failures_in_a_row = Gauge(
    "syncd_run_start_failures_in_a_row",
    "Runs of any source on this replica that failed to start since the last one that started; /readyz turns 503 "
    "at server.quarantine_after.",
    registry=registry,
)
scheduler_running = Gauge(
    "syncd_scheduler_running", "1 while this replica's scheduler runs and its heartbeat is fresh.", registry=registry
)

# prometheus-client's default collectors (process_*, python_info, python_gc_*), registered in our registry too.
for _default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    registry.register(_default)
build_info = Gauge(
    "syncd_build_info", "Always 1; the running syncd's version as a label.", ["version"], registry=registry
)
build_info.labels(__version__).set(1)
webhook_deliveries = Counter(
    "syncd_webhook_deliveries_total",
    "Webhook requests answered 2xx, by endpoint (scheme://host/path), sent by this replica.",
    ["endpoint"],
    registry=registry,
)
webhook_failures = Counter(
    "syncd_webhook_failures_total",
    "Webhook requests that failed (non-2xx, unreachable, unreadable secret), by endpoint, sent by this replica.",
    ["endpoint"],
    registry=registry,
)
config_reloads = Counter(
    "syncd_config_reloads_total", "Config reloads (SIGHUP) by result: ok or refused.", ["result"], registry=registry
)
scim_writes_held = Counter(
    "syncd_scim_writes_held_total",
    "SCIM writes served by this replica whose suspensions or deprovisions the guard held, by org (the members "
    "waiting are syncd_scim_removals_held).",
    ["org"],
    registry=registry,
)


def scim_write_held(org: str) -> None:
    """Count one SCIM write whose removals the guard held for ``org`` (the org's slug)."""
    scim_writes_held.labels(org).inc()


def config_reloaded(ok: bool) -> None:
    config_reloads.labels("ok" if ok else "refused").inc()
