"""Prometheus metrics (prometheus-client; the exposition format and its Content-Type are the library's own,
negotiated from the scrape's ``Accept`` header: text 0.0.4 by default, OpenMetrics when asked for).

Counters and histograms that move with events (HTTP requests, source runs, webhook sends, config reloads, SCIM
removals held by the guard) live in this process's registry, with prometheus-client's process, platform
(``python_info``) and GC collectors and ``syncd_build_info``; the state that belongs to the store (last success per
source, failures and quarantine, held plans, ledger head per org, outbox backlog, given-up events and the age of the
oldest undelivered one) is read from the database at scrape time by :class:`StoreCollector`, so every replica
reports the same shared truth and nothing is double counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC

import peewee
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.clock import utcnow
from syncd.store.dialect import stored_time
from syncd.store.models import Identity, LedgerEntry, Organization, OutboxEvent, Plan, Source
from syncd.sync import held as held_module

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
        unmatched = GaugeMetricFamily(
            "syncd_unmatched_identities",
            "Identities of the source that join no member (no value for the org's match_on); see 'syncd sources show'.",
            labels=["source"],
        )
        query = (
            Identity.select(Source.name, peewee.fn.COUNT(Identity.id))
            .join(Source, on=(Identity.source == Source.id))
            .where(Identity.match_key.is_null())
            .group_by(Source.name)
        )
        for name, count in query.tuples():
            unmatched.add_metric([name], count)
        yield from (success, failures, quarantine, unmatched)

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
        scim_held = GaugeMetricFamily(
            "syncd_scim_removals_held",
            "Members whose SCIM-pushed suspension or deprovision waits in a held plan (the SCIM guard tripped).",
            labels=["org"],
        )
        held_removals = held_module.counts()
        for org_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
            held.add_metric([slug], counts.get(org_id, 0))
            head.add_metric([slug], heads.get(org_id) or 0)
            scim_held.add_metric([slug], held_removals.get(org_id, 0))
        yield from (held, head, scim_held)

        backlog = GaugeMetricFamily("syncd_outbox_backlog", "Webhook events written but not yet delivered.")
        backlog.add_metric([], OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count())
        yield backlog
        from syncd.service.webhooks import MAX_ATTEMPTS

        undelivered = OutboxEvent.delivered_at.is_null()
        given_up = GaugeMetricFamily(
            "syncd_webhook_events_given_up",
            "Webhook events whose delivery was given up after the last attempt, by org.",
            labels=["org"],
        )
        stuck = dict(
            OutboxEvent.select(OutboxEvent.org, peewee.fn.COUNT(OutboxEvent.id))
            .where(undelivered, OutboxEvent.attempts >= MAX_ATTEMPTS)
            .group_by(OutboxEvent.org)
            .tuples()
        )
        for org_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
            given_up.add_metric([slug], stuck.get(org_id, 0))
        yield given_up
        oldest = GaugeMetricFamily(
            "syncd_webhook_oldest_undelivered_age_seconds",
            "Age of the oldest event still being delivered (given-up events excluded); 0 when none is waiting.",
        )
        first = (
            OutboxEvent.select(peewee.fn.MIN(OutboxEvent.created_at))
            .where(undelivered, OutboxEvent.attempts < MAX_ATTEMPTS)
            .scalar()
        )
        age = (utcnow() - stored_time(first)).total_seconds() if first is not None else 0.0
        oldest.add_metric([], max(age, 0.0))
        yield oldest


_store_collector: StoreCollector | None = None


def install_store_collector(quarantined: Callable[[int], bool]) -> None:
    """Register the store gauges once per process (a reload swaps the quarantine rule, not the collector)."""
    global _store_collector
    if _store_collector is None:
        _store_collector = StoreCollector(quarantined)
        registry.register(_store_collector)
    else:
        _store_collector.quarantined = quarantined


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The scrape body and its exact Content-Type, as prometheus-client negotiates them from ``Accept``."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
