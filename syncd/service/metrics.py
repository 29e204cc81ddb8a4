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
import os
from collections.abc import Callable, Iterator
from datetime import UTC

import peewee
from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from syncd.clock import utcnow
from syncd.counters import (
    LATENCY_BUCKETS,
    RUN_BUCKETS,
    build_info,
    config_reloaded,
    config_reloads,
    http_latency,
    http_requests,
    registry,
    run_start_failures,
    run_start_failures_in_a_row,
    scheduler_running,
    scim_write_held,
    scim_writes_held,
    source_run_duration,
    source_runs,
    webhook_deliveries,
    webhook_failures,
)
from syncd.store.dialect import stored_time
from syncd.store.models import Identity, LedgerEntry, Organization, OutboxEvent, Plan, Source
from syncd.sync import held as held_module

# The event counters live in syncd.counters (any layer may count); they are served from here with the store's gauges.
__all__ = [
    "LATENCY_BUCKETS",
    "RUN_BUCKETS",
    "build_info",
    "config_reloaded",
    "config_reloads",
    "exposition",
    "http_latency",
    "http_requests",
    "install_store_collector",
    "registry",
    "run_start_failures",
    "run_start_failures_in_a_row",
    "scheduler_running",
    "scim_write_held",
    "scim_writes_held",
    "source_run_duration",
    "source_runs",
    "webhook_deliveries",
    "webhook_failures",
]

log = logging.getLogger("syncd.metrics")


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


class SummedProcesses(Collector):
    """This process's registry with the counters and histograms of the HTTP processes of a pre-fork ``syncd serve``
    added in: they count in files of one directory (prometheus-client's multiprocess mode,
    https://prometheus.github.io/client_python/multiprocess/), which are summed by family and label set into the
    supervisor's own family of the same name, so each family is exposed once."""

    def __init__(self, directory: str) -> None:
        self.processes = MultiProcessCollector(None, path=directory)

    def collect(self) -> Iterator[Metric]:
        counted = {f.name: f for f in self.processes.collect() if f.type in ("counter", "histogram")}
        for family in registry.collect():
            extra = counted.pop(family.name, None)
            yield family if extra is None else _summed(family, extra)


def _summed(family: Metric, extra: Metric) -> Metric:
    """``family`` and ``extra`` added sample by sample (``_created`` dropped: a sum has no one creation time),
    samples of one label set kept together and in their order (OpenMetrics wants a histogram's buckets so)."""
    totals: dict[tuple[tuple[tuple[str, str], ...], str, str], float] = {}
    for sample in [*family.samples, *extra.samples]:
        if sample.name.endswith("_created"):
            continue
        series = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        key = (series, sample.name, sample.labels.get("le", ""))
        totals[key] = totals.get(key, 0.0) + sample.value
    merged = Metric(family.name, family.documentation, family.type, family.unit)
    for series, name, le in sorted(totals, key=lambda key: key[0]):
        labels = dict(series) | ({"le": le} if le else {})
        merged.add_sample(name, labels, totals[(series, name, le)])
    return merged


_exposed: Collector = registry


def sum_http_processes(directory: str) -> None:
    """Expose, from now on, this process's metrics with those its HTTP processes count in ``directory``."""
    global _exposed
    _exposed = SummedProcesses(directory)


def count_in(directory: str) -> None:
    """In an HTTP process of a pre-fork ``syncd serve``: counters and histograms touched from now on count in
    ``directory`` for the supervisor to sum (prometheus-client picks the value class when a series is created)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The scrape body and its exact Content-Type, as prometheus-client negotiates them from ``Accept``."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_exposed), content_type  # type: ignore[arg-type]
