"""Prometheus metrics (prometheus-client, text exposition format 0.0.4).

Counters and histograms that move with events (HTTP requests, source runs) live in this process's registry; the
state that belongs to the store (last success per source, failures and quarantine, held plans, ledger head per org,
outbox backlog) is read from the database at scrape time by :class:`StoreCollector`, so every replica reports the
same shared truth and nothing is double counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC

import peewee
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncd.store.models import LedgerEntry, Organization, OutboxEvent, Plan, Source

log = logging.getLogger("syncd.metrics")

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


class StoreCollector(Collector):
    """Gauges read from the store when Prometheus scrapes; a store that cannot answer yields ``syncd_store_up 0``."""

    def __init__(self, quarantined: Callable[[int], bool]) -> None:
        self.quarantined = quarantined

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("syncd_store_up", "1 when the store answered the scrape's queries.")
        try:
            families = list(self._from_store())
        except peewee.PeeweeException as error:
            log.warning("metrics.store_unavailable", extra={"syncd_fields": {"error": str(error).splitlines()[0]}})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_store(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "syncd_source_last_success_timestamp_seconds", "Unix time of the last successful run.", labels=["source"]
        )
        failures = GaugeMetricFamily(
            "syncd_source_consecutive_failures", "Failed runs since the last success.", labels=["source"]
        )
        quarantine = GaugeMetricFamily(
            "syncd_source_quarantined", "1 while repeated failures back the source's schedule off.", labels=["source"]
        )
        for source in Source.select(
            Source.name, Source.kind, Source.last_success_at, Source.consecutive_failures
        ).where(Source.kind != "scim"):
            if source.last_success_at is not None:
                success.add_metric([source.name], source.last_success_at.replace(tzinfo=UTC).timestamp())
            failures.add_metric([source.name], source.consecutive_failures)
            quarantine.add_metric([source.name], 1 if self.quarantined(source.consecutive_failures) else 0)
        yield from (success, failures, quarantine)

        slugs = {org.id: org.slug for org in Organization.select(Organization.id, Organization.slug)}
        held = GaugeMetricFamily("syncd_plans_held", "Plans held by the guard, awaiting approval.", labels=["org"])
        counts = dict(
            Plan.select(Plan.org, peewee.fn.COUNT(Plan.id)).where(Plan.status == "held").group_by(Plan.org).tuples()
        )
        head = GaugeMetricFamily(
            "syncd_ledger_head_seq", "Sequence number of the org's last ledger entry.", labels=["org"]
        )
        heads = dict(
            LedgerEntry.select(LedgerEntry.org, peewee.fn.MAX(LedgerEntry.seq)).group_by(LedgerEntry.org).tuples()
        )
        for org_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
            held.add_metric([slug], counts.get(org_id, 0))
            head.add_metric([slug], heads.get(org_id) or 0)
        yield from (held, head)

        backlog = GaugeMetricFamily("syncd_outbox_backlog", "Webhook events written but not yet delivered.")
        backlog.add_metric([], OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count())
        yield backlog


_store_collector: StoreCollector | None = None


def install_store_collector(quarantined: Callable[[int], bool]) -> None:
    """Register the store gauges once per process (a reload swaps the quarantine rule, not the collector)."""
    global _store_collector
    if _store_collector is None:
        _store_collector = StoreCollector(quarantined)
        registry.register(_store_collector)
    else:
        _store_collector.quarantined = quarantined


def exposition() -> bytes:
    return generate_latest(registry)
