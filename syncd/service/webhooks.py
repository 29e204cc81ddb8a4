"""Webhook delivery: outbox events, written in the apply transaction (:mod:`syncd.sync.outbox`), POSTed after commit
with retries (docs/architecture.md, "Contracts").

Requests follow Standard Webhooks 1.0 (https://github.com/standard-webhooks/standard-webhooks,
spec/standard-webhooks.md): a JSON body ``{"type", "timestamp", "org", "data"}`` and the headers ``webhook-id`` (the
event's random ``msg_`` id, fixed when it was written, so unique across stores and the same on every retry: the
receiver's de-duplication key), ``webhook-timestamp`` (Unix seconds, read at each send) and ``webhook-signature:
v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``. The key is the secret read from ``secret_file``/
``secret_env``; a ``whsec_`` secret is base64-decoded as the spec describes, any other is used as its UTF-8 bytes.

Delivery is at least once. An event is done when every webhook that subscribes to it answered 2xx; otherwise all its
subscribers get it again after an exponential backoff (from ``server.webhook_first_backoff``, 30 s by default,
doubling up to 6 h; or the receiver's ``Retry-After``, when longer), up to
:data:`MAX_ATTEMPTS` attempts, after which the event stays undelivered with its last error (given up). One target's
events (``order_key``, e.g. ``member:<key>``) are sent in order: only the first undelivered, not given-up one is due.
Redirects are not followed, so a signed payload only ever goes to the configured URL. A replica claims an event
before sending it, so replicas sharing a database do not send it twice at once (a replica that dies mid-send leaves
the claim to expire, and the event is sent again). Once an endpoint is unreachable in a round, its other events wait
for the next round instead of each waiting out a timeout. Each failed attempt is one log line, a give-up one warning.
Errors and logs name the endpoint as scheme://host/path only: URLs can carry tokens, and secrets never reach logs or
the outbox.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import peewee
import requests

from syncd.clock import iso, utcnow
from syncd.common.errors import ConnectorError
from syncd.common.redaction import redact
from syncd.common.settings import read_secret
from syncd.config import WEBHOOK_MAX_BACKOFF, Config, WebhookSettings, parse_interval
from syncd.logs import log_event
from syncd.service import metrics
from syncd.store.models import Organization, OutboxEvent

log = logging.getLogger("syncd.webhooks")

MAX_ATTEMPTS = 12
MAX_BACKOFF = timedelta(seconds=WEBHOOK_MAX_BACKOFF)
CLAIM = timedelta(minutes=2)


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded (Standard Webhooks §Signature scheme), else its bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def first_backoff(config: Config) -> timedelta:
    """The wait after a first failed attempt (``server.webhook_first_backoff``)."""
    return timedelta(seconds=parse_interval(config.server.webhook_first_backoff, "server.webhook_first_backoff"))


def backoff(attempts: int, first: timedelta) -> timedelta:
    """Wait after the ``attempts``-th failure: ``first``, then doubled per failure (30 s, 1 min, 2 min, ... by
    default), capped at :data:`MAX_BACKOFF`."""
    return min(first * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def endpoint(url: str) -> str:
    """A URL without credentials, query or fragment, fit for an error message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def subscribes(hook: WebhookSettings, org_slug: str, event_type: str) -> bool:
    if hook.orgs and org_slug not in hook.orgs:
        return False
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in hook.events)


def deliver_due(
    config: Config,
    *,
    now: datetime | None = None,
    session: requests.Session | None = None,
    limit: int = 100,
    stamp: Callable[[], float] = time.time,
) -> DeliveryReport:
    """Send the outbox events that are due (oldest first, at most ``limit``); call after a commit and periodically.

    Only the first undelivered event of each target (``order_key``) is due: a member's later event waits until the
    earlier one is delivered or given up, in this round or a later one. ``now`` is the clock reading to schedule
    against (naive UTC; tests pass it to step through retries); ``stamp`` gives ``webhook-timestamp``, read at each
    send so that a slow round never sends a stale one.
    """
    moment = now or utcnow()
    first = first_backoff(config)
    http = session or _session()
    report = DeliveryReport()
    unreachable: set[str] = set()
    seen: set[int] = set()
    while len(seen) < limit:
        batch = list(_due(moment, seen, limit - len(seen)))
        if not batch:
            break
        for event in batch:
            seen.add(event.id)
            slug = event.org.slug
            hooks = [hook for hook in config.webhooks if subscribes(hook, slug, event.event_type)]
            if any(hook.url in unreachable for hook in hooks):
                report.deferred.append(event.id)
                continue
            if not _claim(event, moment):
                continue
            errors = []
            for hook in hooks:
                error = _post(http, hook, event, slug, stamp)
                if error is None:
                    metrics.webhook_deliveries.labels(endpoint(hook.url)).inc()
                    continue
                metrics.webhook_failures.labels(endpoint(hook.url)).inc()
                errors.append(error)
                if error.unreachable:
                    unreachable.add(hook.url)
            _record(event, moment, errors, report, first)
    return report


def deliver_until_idle(config: Config) -> DeliveryReport:
    """:func:`deliver_due` round after round until nothing more is due or an endpoint is unreachable (``syncd
    webhooks deliver``), the rounds' reports summed."""
    total = DeliveryReport()
    while True:
        report = deliver_due(config)
        for name in ("delivered", "failed", "gave_up", "deferred"):
            getattr(total, name).extend(getattr(report, name))
        if report.deferred or not (report.delivered or report.failed or report.gave_up):
            return total


def revive_given_up() -> int:
    """Give every given-up event a fresh set of :data:`MAX_ATTEMPTS` attempts; return how many were revived."""
    return int(
        OutboxEvent.update(attempts=0, next_attempt_at=None)
        .where(OutboxEvent.delivered_at.is_null(), OutboxEvent.attempts >= MAX_ATTEMPTS)
        .execute()
    )


def last_error(event_id: int) -> str | None:
    """The error of an event's last failed attempt."""
    return OutboxEvent.get_by_id(event_id).last_error


def backlog(org_id: int | None = None) -> list[dict[str, object]]:
    """Undelivered events per org (or of one org), by slug, as ``syncd webhooks status --format json`` prints them:
    how many are still being delivered, how many were given up, and when the oldest was written."""
    given_up = OutboxEvent.attempts >= MAX_ATTEMPTS
    query = (
        OutboxEvent.select(
            Organization.slug,
            peewee.fn.SUM(peewee.Case(None, [(given_up, 0)], 1)).alias("pending"),
            peewee.fn.SUM(peewee.Case(None, [(given_up, 1)], 0)).alias("given_up"),
            peewee.fn.MIN(OutboxEvent.created_at).alias("oldest"),
        )
        .join(Organization)
        .where(OutboxEvent.delivered_at.is_null())
        .group_by(Organization.slug)
        .order_by(Organization.slug)
    )
    if org_id is not None:
        query = query.where(OutboxEvent.org == org_id)
    return [
        {"org": slug, "pending": int(pending), "given_up": int(gave_up), "oldest": iso(oldest)}
        for slug, pending, gave_up, oldest in query.tuples()
    ]


def _due(moment: datetime, seen: set[int], room: int) -> peewee.ModelSelect:
    """Due events not handled yet in this round, each the first undelivered, not given-up one of its target."""
    earlier = OutboxEvent.alias()
    ahead = earlier.select(peewee.SQL("1")).where(
        earlier.org == OutboxEvent.org,
        earlier.order_key == OutboxEvent.order_key,
        earlier.id < OutboxEvent.id,
        earlier.delivered_at.is_null(),
        earlier.attempts < MAX_ATTEMPTS,
    )
    query = (
        OutboxEvent.select(OutboxEvent, Organization.slug)
        .join(Organization)
        .where(
            OutboxEvent.delivered_at.is_null(),
            OutboxEvent.attempts < MAX_ATTEMPTS,
            OutboxEvent.next_attempt_at.is_null() | (OutboxEvent.next_attempt_at <= moment),
            ~peewee.fn.EXISTS(ahead),
        )
    )
    if seen:
        query = query.where(OutboxEvent.id.not_in(sorted(seen)))
    return query.order_by(OutboxEvent.id).limit(room)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _claim(event: OutboxEvent, moment: datetime) -> bool:
    """Take the event for this process for :data:`CLAIM`; false when another replica took it first."""
    claimed = (
        OutboxEvent.update(next_attempt_at=moment + CLAIM)
        .where(
            OutboxEvent.id == event.id,
            OutboxEvent.delivered_at.is_null(),
            OutboxEvent.next_attempt_at.is_null() | (OutboxEvent.next_attempt_at <= moment),
        )
        .execute()
    )
    return claimed == 1


@dataclass
class _Failure:
    where: str
    status: str
    retry_after: timedelta | None = None
    unreachable: bool = False
    hint: str = ""

    @property
    def text(self) -> str:
        return f"{self.where}: {self.status}{self.hint}"


def _post(
    http: requests.Session, hook: WebhookSettings, event: OutboxEvent, slug: str, stamp: Callable[[], float]
) -> _Failure | None:
    where = endpoint(hook.url)
    try:
        secret = read_secret(hook, "secret", f"webhook {where}")
    except ConnectorError as error:
        return _Failure(where, "secret unreadable", hint=f" ({error})")
    assert secret is not None
    body = json.dumps(
        {"type": event.event_type, "timestamp": iso(event.created_at), "org": slug, "data": json.loads(event.payload)},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    message_id = event.message_id
    timestamp = int(stamp())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(signing_key(secret), message_id, timestamp, body),
        "user-agent": "syncd-webhooks",
    }
    try:
        response = http.post(
            hook.url,
            data=body,
            headers=headers,
            timeout=(min(hook.timeout, 5.0), hook.timeout),
            allow_redirects=False,
            verify=hook.ca_file or True,
        )
    except requests.RequestException as error:
        return _Failure(where, type(error).__name__, unreachable=True, hint=" (is the receiver up and reachable?)")
    if 200 <= response.status_code < 300:
        return None
    retry_after = _retry_after(response.headers.get("Retry-After"), datetime.fromtimestamp(stamp(), UTC))
    return _Failure(where, f"HTTP {response.status_code}", retry_after)


def _retry_after(value: str | None, moment: datetime) -> timedelta | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date."""
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - moment, timedelta(0))


def _record(
    event: OutboxEvent, moment: datetime, errors: list[_Failure], report: DeliveryReport, first: timedelta
) -> None:
    """Store the attempt's outcome (a failure waits :func:`backoff` from ``first``); log each failed attempt once per
    endpoint, and a give-up at warning."""
    attempts = event.attempts + 1
    if not errors:
        OutboxEvent.update(attempts=attempts, delivered_at=moment, next_attempt_at=None, last_error=None).where(
            OutboxEvent.id == event.id
        ).execute()
        report.delivered.append(event.id)
        return
    text = redact("; ".join(error.text for error in errors))
    if attempts >= MAX_ATTEMPTS:
        OutboxEvent.update(
            attempts=attempts, next_attempt_at=None, last_error=f"gave up after {attempts} attempts: {text}"
        ).where(OutboxEvent.id == event.id).execute()
        report.gave_up.append(event.id)
        for error in errors:
            log_event(
                log,
                "webhook.delivery.gave_up",
                logging.WARNING,
                endpoint=error.where,
                status=error.status,
                webhook_id=event.message_id,
                event_type=event.event_type,
                attempts=attempts,
                action="see 'syncd webhooks status'; 'syncd webhooks deliver --retry-given-up' sends it again",
            )
        return
    wait = max([backoff(attempts, first)] + [e.retry_after for e in errors if e.retry_after is not None])
    OutboxEvent.update(attempts=attempts, next_attempt_at=moment + wait, last_error=text).where(
        OutboxEvent.id == event.id
    ).execute()
    report.failed.append(event.id)
    for error in errors:
        log_event(
            log,
            "webhook.delivery.failed",
            endpoint=error.where,
            status=error.status,
            webhook_id=event.message_id,
            event_type=event.event_type,
            attempt=attempts,
            next_attempt_at=iso(moment + wait),
        )
