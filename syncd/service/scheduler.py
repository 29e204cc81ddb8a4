"""The source scheduler: one APScheduler 3.x BackgroundScheduler per process, a job per enabled source.

Each job fires on the source's ``schedule`` (an interval aligned to the Unix epoch, so replicas fire for the same
slots, or a cron expression) plus a small jitter drawn around each slot (:mod:`syncd.service.slots`), with
``max_instances=1`` (no overlapping runs of one source in a replica), ``coalesce=True`` (a backlog of missed slots
runs once) and a misfire grace. Across replicas the database lease (:mod:`syncd.store.lease`) lets exactly one run a
slot. A run is a full snapshot when ``full_snapshot_every`` has
elapsed since the last one. Failures back the source off: after ``quarantine_after`` consecutive failures the
source is quarantined, its next slots are skipped with a doubling backoff (capped by ``max_backoff``), one alert
line is logged, and the first success ends it (https://apscheduler.readthedocs.io/en/3.x/userguide.html).

Each run executes in a child process (:mod:`syncd.service.worker`); the lease heartbeat and the bookkeeping stay here. The
run function is a parameter (``syncd.sync.pipeline.run_source`` by default, looked up at call time) so tests can give
the scheduler a controllable one; it must be a module-level function, because it is pickled to the child.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.clock import iso, utcnow
from syncd.config import Config, SourceSettings, parse_interval
from syncd.logs import bound, log_event, redact_text
from syncd.service import metrics, webhooks, worker
from syncd.service.slots import SlotTrigger
from syncd.store import lease
from syncd.store.db import database
from syncd.store.models import Organization, Source
from syncd.sync import source_runs
from syncd.sync.orgs import scim_source_name

log = logging.getLogger("syncd.scheduler")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
BEAT_SECONDS = 1.0
WEBHOOK_BATCH = 500
WEBHOOK_TICK_BUDGET = 30.0
RETRY_MARGIN = timedelta(milliseconds=200)
RETRY_SUFFIX = "#retry"


def housekeep_org(
    config: Config,
    source_name: str,
    *,
    dry_run: bool = False,
    full: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
) -> Any:
    """Plan and apply a whole org from its staged state, as a run function of the org's SCIM source.

    An org fed only by SCIM pushes has no scheduled read, so without this its suspended members would never pass
    their grace period into deprovisioning, and a rule change in the config would reach a member only when the IdP
    next touched them. Module-level, since it is pickled to the run's child process.
    """
    from syncd.sync import pipeline

    slug = source_name.removeprefix("scim:")
    return pipeline.reconcile_org(config, slug, dry_run=dry_run, actor=actor or "system:housekeeping", now=now)


class RunFunction(Protocol):
    def __call__(
        self, config: Config, source_name: str, *, dry_run: bool, full: bool, actor: str | None, now: datetime | None
    ) -> Any: ...


class SchedulerError(Exception):
    """A run could not be started; ``status`` is the HTTP status the admin API answers with."""

    status = 400


class UnknownSource(SchedulerError):
    status = 404


class SourceBusy(SchedulerError):
    status = 409


class SourceDisabled(SchedulerError):
    status = 409


class ShuttingDown(SchedulerError):
    status = 503


@dataclass(frozen=True)
class RunOutcome:
    """What the scheduler records and reports about one run."""

    source: str
    run_id: str
    result: str
    full: bool
    duration: float
    error: str | None = None
    detail: Any = None


def default_run(
    config: Config, source_name: str, *, dry_run: bool, full: bool, actor: str | None, now: datetime | None
) -> Any:
    """The real pipeline, looked up at call time so that the run function stays replaceable."""
    from syncd.sync import pipeline

    return pipeline.run_source(config, source_name, dry_run=dry_run, full=full, actor=actor, now=now)


def replica_id() -> str:
    return lease.owner_id()


def build_trigger(schedule: str, where: str) -> tuple[BaseTrigger, BaseTrigger, float]:
    """The jittered trigger a job fires on (jitter drawn around each slot, :mod:`syncd.service.slots`), the plain trigger
    of the slot boundaries, and the period."""
    text = schedule.strip()
    if len(text.split()) == 5:
        plain: BaseTrigger = CronTrigger.from_crontab(text, timezone=UTC)
        first = plain.get_next_fire_time(None, datetime.now(UTC))
        second = plain.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
        period = (second - first).total_seconds() if first and second else 3600.0
    else:
        period = float(parse_interval(text, where))
        plain = IntervalTrigger(seconds=period, start_date=EPOCH, timezone=UTC)
    return SlotTrigger(plain, min(period / 10, 60.0)), plain, period


class SourceScheduler:
    """Runs the configured sources on their schedules in this process; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        run: RunFunction | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        isolate: bool = True,
    ) -> None:
        self.config = config
        self.run = run or default_run
        self.isolate = isolate
        self.owner = owner or replica_id()
        self.clock = clock
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(8), "beat": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._plain: dict[str, tuple[BaseTrigger, float, str]] = {}
        self._in_flight: dict[str, str] = {}
        self._idle = threading.Condition()
        self.housekeeping_config = threading.Lock()
        """Held while an org is housekept and while a reload swaps the config: a whole-org plan made with the old
        rules never commits after SCIM writes have started using the new ones (docs/architecture.md, "Running it")."""
        self._accepting = True
        self._last_beat = 0.0
        self._start_failures = 0
        self._start_error: str | None = None
        self._abandoned = False
        self._heartbeats: dict[str, threading.Event] = {}

    # ----- policy -----------------------------------------------------------------------------------------------
    def quarantined(self, failures: int) -> bool:
        return self.config.server.quarantined(failures)

    def backoff(self, failures: int, period: float) -> float:
        """Extra seconds to wait before the next slot: 0, then period·(2^k − 1) capped by ``max_backoff``."""
        if not self.quarantined(failures):
            return 0.0
        steps = min(failures - self.config.server.quarantine_after + 1, 20)
        cap = parse_interval(self.config.server.max_backoff, "server.max_backoff")
        return min(period * (2**steps - 1), float(cap))

    # ----- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._last_beat = time.monotonic()
        self._scheduler.add_job(self._beat, "interval", seconds=BEAT_SECONDS, id="__beat__", executor="beat")
        every = parse_interval(self.config.server.housekeeping_every, "server.housekeeping_every")
        self._scheduler.add_job(self.housekeep, "interval", seconds=every, id="__housekeeping__", name="housekeeping")
        webhook_every = parse_interval(self.config.server.webhook_every, "server.webhook_every")
        self._scheduler.add_job(
            self.deliver_webhooks, "interval", seconds=webhook_every, id="__webhooks__", name="webhooks"
        )
        self.free_dead_leases()
        self.apply(self.config)
        self._scheduler.start()
        log_event(log, "scheduler.started", owner=self.owner, sources=len(self._plain))

    def free_dead_leases(self) -> None:
        """Free leases held by dead processes of this host (:func:`syncd.store.lease.free_dead_local`) before the
        catch-up runs try to claim them."""
        try:
            freed = lease.free_dead_local(self.clock())
        except Exception as error:
            log_event(log, "source.lease.free_failed", logging.WARNING, error=_one_line(error))
            return
        for name, former in freed:
            log_event(log, "source.lease.freed", source=name, former_owner=former, reason="its process here is gone")

    def abandon(self) -> list[str]:
        """Shutdown past its timeout: kill the run processes (their transactions roll back), record nothing about
        those runs, and release their leases with no cooldown so that the restarted service redoes them at once.
        Returns the sources whose runs were abandoned."""
        self._abandoned = True
        with self._idle:
            running = sorted(self._in_flight)
            for name in running:
                if name in self._heartbeats:
                    self._heartbeats[name].set()
        worker.kill_all()
        now = self.clock()
        for name in running:
            try:
                lease.release(name, self.owner, now)
            except Exception as error:
                log_event(log, "source.lease.release_failed", logging.WARNING, source=name, error=_one_line(error))
        return running

    def healthy(self) -> bool:
        """True while the scheduler runs and its heartbeat job fired recently (feeds /readyz and WATCHDOG=1)."""
        alive = (
            self._accepting
            and self._scheduler.running
            and time.monotonic() - self._last_beat < max(5.0, 5 * BEAT_SECONDS)
        )
        metrics.scheduler_running.set(1 if alive else 0)
        return alive

    def start_trouble(self) -> str | None:
        """Why runs are not starting, once ``quarantine_after`` runs in a row ended before they started (feeds
        /readyz): a replica whose every run dies at start-up is not doing its job, though its HTTP answers."""
        if self._start_failures < self.config.server.quarantine_after:
            return None
        return f"runs failing to start: {self._start_failures} in a row, last: {self._start_error}"

    def _note_start(self, source: str, error: BaseException | None) -> None:
        """Count runs that could not start (:class:`syncd.service.worker.RunNotStarted`); any run that started resets it."""
        if isinstance(error, worker.RunNotStarted):
            self._start_failures += 1
            self._start_error = _one_line(error)
            metrics.run_start_failures.labels(source).inc()
        else:
            self._start_failures = 0
            self._start_error = None
        metrics.run_start_failures_in_a_row.set(self._start_failures)

    def stop_taking_work(self) -> None:
        """Fire no more jobs and refuse manual runs; runs in flight go on (see :meth:`wait_idle`)."""
        self._accepting = False
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        metrics.scheduler_running.set(0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in flight; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def in_flight(self) -> dict[str, str]:
        with self._idle:
            return dict(self._in_flight)

    def apply(self, config: Config) -> dict[str, list[str]]:
        """Make the jobs match ``config``: new sources scheduled, changed ones rescheduled, removed ones dropped."""
        self.config = config
        wanted = {s.name: s for s in config.sources if s.enabled}
        changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        for name in sorted(set(self._plain) - set(wanted)):
            self._scheduler.remove_job(name)
            del self._plain[name]
            changes["removed"].append(name)
        for name, source in sorted(wanted.items()):
            fired, plain, period = build_trigger(source.schedule, f"source {name}.schedule")
            known = self._plain.get(name)
            if known is not None and known[2] == source.schedule:
                continue
            self._scheduler.add_job(
                self._tick,
                fired,
                args=[name],
                id=name,
                name=f"source {name}",
                replace_existing=True,
                misfire_grace_time=max(1, int(period // 2)),
                **({"next_run_time": datetime.now(UTC)} if self._overdue(name, plain) else {}),
            )
            changes["changed" if known is not None else "added"].append(name)
            self._plain[name] = (plain, period, source.schedule)
        return changes

    def _overdue(self, name: str, plain: BaseTrigger) -> bool:
        """A source never run, or whose last run is older than the latest slot (a run abandoned at shutdown records
        nothing), runs at once instead of waiting for its next slot."""
        row = Source.get_or_none(Source.name == name)
        if row is None:
            return False
        return row.last_run_at is None or self._next_slot(plain, row.last_run_at) <= self.clock()

    def _beat(self) -> None:
        self._last_beat = time.monotonic()

    def housekeep(self) -> None:
        """Reconcile every org from its staged state (grace periods, rule changes), one replica per org.

        The org's SCIM source lease (``scim:<slug>``) makes exactly one replica do it per period; SCIM writes take
        no lease, so nothing else waits on it.
        """
        if not self._accepting:
            return
        period = parse_interval(self.config.server.housekeeping_every, "server.housekeeping_every")
        for (slug,) in Organization.select(Organization.slug).tuples():
            name = scim_source_name(slug)
            now = self.clock()
            try:
                if not lease.claim(name, self.owner, now, self.config.server.lease_seconds, scheduled=True):
                    continue
            except Exception as error:
                log_event(log, "org.housekeeping.lease_failed", logging.WARNING, org=slug, error=_one_line(error))
                continue
            try:
                context = {"org": slug, "source": name, "run": uuid.uuid4().hex[:12]}
                with self.housekeeping_config:
                    if self.isolate:
                        detail = worker.run_in_child(
                            housekeep_org, self.config, name, full=False, actor=None, now=now, context=context
                        )
                    else:
                        detail = housekeep_org(self.config, name, now=now)
                self._note_start(name, None)
                if getattr(detail, "actions", 0):
                    log_event(log, "org.housekeeping", org=slug, actions=detail.actions, held=detail.held)
            except Exception as error:
                self._note_start(name, error)
                log_event(log, "org.housekeeping.failed", logging.WARNING, org=slug, error=_one_line(error))
            finally:
                lease.release(name, self.owner, now + timedelta(seconds=period) - timedelta(seconds=BEAT_SECONDS))

    def deliver_webhooks(self) -> None:
        """Send due outbox events (syncd.service.webhooks), in batches, for at most a bounded time per tick."""
        started = time.monotonic()
        while self._accepting and time.monotonic() - started < WEBHOOK_TICK_BUDGET:
            try:
                report = webhooks.deliver_due(self.config, limit=WEBHOOK_BATCH)
            except Exception as error:
                log_event(log, "webhooks.failed", logging.WARNING, error=_one_line(error))
                return
            handled = len(report.delivered) + len(report.failed) + len(report.gave_up) + len(report.deferred)
            if handled < WEBHOOK_BATCH:
                return

    # ----- runs -------------------------------------------------------------------------------------------------
    def _tick(self, name: str) -> None:
        """A scheduled slot: claim the lease (skip when another replica has this slot), then run."""
        if not self._accepting or name not in self._plain:
            return
        now = self.clock()
        try:
            if not lease.claim(name, self.owner, now, self.config.server.lease_seconds, scheduled=True):
                self._skipped(name, now)
                return
        except Exception as error:
            log_event(log, "source.lease.failed", logging.WARNING, source=name, error=_one_line(error))
            return
        self._execute(self._settings(name), now, actor=f"source:{name}")

    def _skipped(self, name: str, now: datetime) -> None:
        """The slot's claim failed. Cooling down (the slot was run): nothing to do. Held by a run elsewhere: that run
        may be a dead replica's that nobody will finish, so try again when its lease expires, if that comes before
        the next slot (a live holder renews it, and the retry finds it held or cooling down again)."""
        owner, until = lease.holder(name)
        if owner is None or until is None or owner == self.owner:
            log_event(log, "source.run.skipped", logging.DEBUG, source=name, reason="cooling down until its next slot")
            return
        plain = self._plain.get(name, (None, 0.0, ""))[0]
        retry_at = until + RETRY_MARGIN
        if retry_at < self._next_slot(plain, now):
            self._scheduler.add_job(
                self._tick,
                "date",
                run_date=retry_at.replace(tzinfo=UTC),
                args=[name],
                id=f"{name}{RETRY_SUFFIX}",
                name=f"source {name} (retry)",
                replace_existing=True,
                misfire_grace_time=None,
            )
            log_event(log, "source.run.skipped", source=name, reason="lease held", owner=owner, retry_at=iso(retry_at))
        else:
            log_event(log, "source.run.skipped", source=name, reason="lease held", owner=owner, retry_at="next slot")

    def run_now(self, name: str, *, full: bool = False, actor: str = "admin:api") -> RunOutcome:
        """Run a source now (admin API, ``syncd sync`` against the service), unless a run of it is in flight."""
        if not self._accepting:
            raise ShuttingDown("the service is shutting down; retry against another replica or after restart")
        settings = self._settings(name)
        if not settings.enabled:
            raise SourceDisabled(f"source {name} is disabled in the config; set enabled = true and reload")
        now = self.clock()
        if not lease.claim(name, self.owner, now, self.config.server.lease_seconds, scheduled=False):
            raise SourceBusy(f"source {name} is running now (lease held by another run); retry when it has finished")
        return self._execute(settings, now, actor=actor, force_full=full)

    def _settings(self, name: str) -> SourceSettings:
        for source in self.config.sources:
            if source.name == name:
                return source
        raise UnknownSource(f"no source named {name!r} in the running config")

    def _execute(self, settings: SourceSettings, now: datetime, *, actor: str, force_full: bool = False) -> RunOutcome:
        name = settings.name
        run_id = uuid.uuid4().hex[:12]
        stop_heartbeat = threading.Event()
        with self._idle:
            self._in_flight[name] = run_id
            self._heartbeats[name] = stop_heartbeat
        heartbeat = threading.Thread(target=self._renew, args=(name, stop_heartbeat), name=f"lease-{name}", daemon=True)
        heartbeat.start()
        started = time.monotonic()
        full = force_full
        result, error, detail, before = "failed", None, None, 0
        with bound(org=settings.org, source=name, run=run_id):
            try:
                row = Source.get(Source.name == name)
                before = row.consecutive_failures
                due = source_runs.full_due(row, settings.full_snapshot_every, now, f"source {name}.full_snapshot_every")
                full = full or due
                log_event(log, "source.run.start", full=full, actor=actor, owner=self.owner)
                if self.isolate:
                    detail = worker.run_in_child(
                        self.run,
                        self.config,
                        name,
                        full=full,
                        actor=actor,
                        now=now,
                        context={"org": settings.org, "source": name, "run": run_id},
                    )
                else:
                    detail = self.run(self.config, name, dry_run=False, full=full, actor=actor, now=now)
                result = _result_of(detail)
                self._note_start(name, None)
            except Exception as caught:
                self._note_start(name, caught)
                error = _one_line(caught)
                log.error("source.run.failed", exc_info=caught, extra={"syncd_fields": {"full": full}})
            finally:
                stop_heartbeat.set()
                duration = time.monotonic() - started
                metrics.source_runs.labels(name, result).inc()
                metrics.source_run_duration.labels(name, result).observe(duration)
                try:
                    if not self._abandoned:
                        self._record(name, now, full, error, duration, before, result)
                finally:
                    with self._idle:
                        self._in_flight.pop(name, None)
                        self._heartbeats.pop(name, None)
                        self._idle.notify_all()
        return RunOutcome(name, run_id, result, full, duration, error, detail)

    def _renew(self, name: str, stop: threading.Event) -> None:
        """Heartbeat of one run's lease (its own thread, so its own database connection, closed at the end)."""
        ttl = self.config.server.lease_seconds
        try:
            while not stop.wait(ttl / 3):
                try:
                    if not lease.renew(name, self.owner, self.clock(), ttl):
                        log_event(log, "source.lease.lost", logging.ERROR, source=name, owner=self.owner)
                        return
                except Exception as error:
                    log_event(log, "source.lease.renew_failed", logging.WARNING, source=name, error=_one_line(error))
        finally:
            database.obj.close()

    def _record(
        self, name: str, started: datetime, full: bool, error: str | None, duration: float, before: int, result: str
    ) -> None:
        """Settle the run's outcome on the Source row (``source_runs.settle``: unless the pipeline recorded it), alert
        once on quarantine, log recovery, and release the lease."""
        finished = self.clock()
        after = source_runs.settle(name, started, finished, full, error, result == "ok")
        failures = after.consecutive_failures
        ms = round(duration * 1000)
        if error is None:
            log_event(log, "source.run.ok", result=result, full=full, duration_ms=ms)
            if self.quarantined(before) and failures == 0:
                log_event(log, "source.recovered", logging.WARNING, failures_before=before)
        else:
            log_event(log, "source.run.error", logging.WARNING, failures=failures, duration_ms=ms, error=error)
        if self.quarantined(failures) and not self.quarantined(before):
            log_event(
                log,
                "source.quarantined",
                logging.ERROR,
                failures=failures,
                last_error=after.last_error,
                action="backing off; fix the cause, the first successful run ends the quarantine",
            )
        plain, period, _ = self._plain.get(name, (None, 0.0, ""))
        not_before = finished + timedelta(seconds=self.backoff(failures, period))
        lease.release(name, self.owner, self._next_slot(plain, not_before))

    def _next_slot(self, plain: BaseTrigger | None, moment: datetime) -> datetime:
        if plain is None:
            return moment
        aware = moment.replace(tzinfo=UTC) + timedelta(microseconds=1)
        boundary = plain.get_next_fire_time(None, aware)
        return boundary.astimezone(UTC).replace(tzinfo=None) if boundary else moment


def _result_of(detail: Any) -> str:
    if getattr(detail, "held", False):
        return "held"
    if getattr(detail, "complete", True) is False:
        return "partial"
    return "ok"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return redact_text(text)
