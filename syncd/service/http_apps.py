"""The WSGI apps of ``syncd serve``: SCIM at /scim/v2, health, readiness and the admin API; metrics on their own.

- ``/healthz``: the process answers (liveness; no dependency is checked, so a slow database never restarts it).
- ``/readyz``: the store answers, its schema is current and the scheduler runs and its runs start (readiness; 503
  with the failing check named, also while the service drains on SIGTERM or when runs keep dying before they start).
- Every request is counted and timed for ``/metrics`` by the before/after request hooks, by route template so that
  ids never become label values. ``/metrics`` itself is not on this app: its labels name every org and source, so it
  is served by :func:`create_metrics_app` on its own listener (``server.metrics_listen``), never to the IdPs and
  strangers that reach SCIM.
- ``/admin/v1/sources`` and ``POST /admin/v1/sources/<name>/sync``: the org's sources and their run state, and a run
  now; bearer token of the org with scope ``admin``. A source of another org answers 404, exactly like a missing
  one (docs/architecture.md, invariant 6).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import peewee
from flask import Flask, Response, g, jsonify, request

import scim
from syncd.admin import tokens
from syncd.clock import iso, utcnow
from syncd.config import Config
from syncd.logs import bound as bind
from syncd.logs import log_event
from syncd.service import metrics
from syncd.service.scheduler import SchedulerError, SourceScheduler
from syncd.store import current_version, database, lease
from syncd.store.db import UNREACHABLE
from syncd.store.migrations import latest_version
from syncd.store.models import Source

log = logging.getLogger("syncd.web")
SCIM_PREFIX = "/scim/v2"
SCIM_ENDPOINTS = frozenset(
    {"Users", "Groups", "Me", "Bulk", ".search", "Schemas", "ResourceTypes", "ServiceProviderConfig"}
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class ServiceState:
    """What the process-level code shares with the app: the scheduler and whether the service is draining."""

    config: Config
    scheduler: SourceScheduler | None = None
    draining: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def create_app(config: Config, state: ServiceState | None = None, *, with_scim: bool = True) -> Flask:
    """Build the app for ``config``; ``state`` links it to the running scheduler (tests may leave it out)."""
    app = Flask("syncd")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    service = state or ServiceState(config=config)
    app.extensions["syncd"] = service
    metrics.install_store_collector(service.scheduler.quarantined if service.scheduler else config.server.quarantined)
    blueprint = scim.create_blueprint(config, lambda: service.config) if with_scim else None
    if blueprint is not None:
        scim.install(app, blueprint)

    @app.before_request
    def start_request() -> None:
        g.syncd_started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.syncd_request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        g.syncd_log_context = bind(request=g.syncd_request_id)
        g.syncd_log_context.__enter__()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.get("syncd_started")
        endpoint = endpoint_label()
        metrics.http_requests.labels(request.method, endpoint, str(response.status_code)).inc()
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.http_latency.labels(request.method, endpoint).observe(elapsed)
            if endpoint.startswith(SCIM_PREFIX) or endpoint.startswith("/admin") or response.status_code >= 500:
                log_event(
                    log,
                    "http.request",
                    method=request.method,
                    endpoint=endpoint,
                    status=response.status_code,
                    duration_ms=round(elapsed * 1000, 1),
                )
        if "syncd_request_id" in g:
            response.headers["X-Request-Id"] = g.syncd_request_id
        return response

    @app.teardown_request
    def end_request(error: BaseException | None) -> None:
        context = g.pop("syncd_log_context", None)
        if context is not None:
            context.__exit__(None, None, None)
        if isinstance(error, UNREACHABLE) and database.obj is not None:
            database.obj.close()

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        checks = readiness(service)
        ready = all(value == "ok" for value in checks.values())
        return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503

    @app.get("/admin/v1/sources")
    def list_sources() -> tuple[Response, int]:
        principal, refusal = _admin(service)
        if principal is None:
            return refusal
        return jsonify(sources_state(service, principal.org_slug)), 200

    @app.post("/admin/v1/sources/<path:name>/sync")
    def sync_source(name: str) -> tuple[Response, int]:
        principal, refusal = _admin(service)
        if principal is None:
            return refusal
        configured = {s.name: s for s in service.config.sources}
        if name not in configured or configured[name].org != principal.org_slug:
            return _error(404, f"no source named {name!r} in this organization")
        if service.scheduler is None or service.draining:
            return _error(503, "the scheduler is not running here (shutting down); retry later")
        full = request.args.get("full", "false").lower() in ("1", "true", "yes")
        try:
            outcome = service.scheduler.run_now(name, full=full, actor=principal.actor)
        except SchedulerError as error:
            return _error(error.status, str(error))
        body = {
            "source": outcome.source,
            "run_id": outcome.run_id,
            "result": outcome.result,
            "full": outcome.full,
            "duration_seconds": round(outcome.duration, 3),
            "error": outcome.error,
        }
        detail = outcome.detail
        for key in ("plan_id", "actions", "applied", "held", "complete", "problems"):
            if hasattr(detail, key):
                body[key] = getattr(detail, key)
        return jsonify(body), 200 if outcome.error is None else 502

    return app


def endpoint_label() -> str:
    """The metric label of this request's endpoint: the route template, with SCIM's catch-all route broken down by
    resource endpoint (RFC 7644 §3.2: /Users, /Groups, /Users/<id>, /.search, /Schemas ...) so ids, filters and
    arbitrary paths never become label values."""
    if request.url_rule is None:
        return "unmatched"
    rule = request.url_rule.rule
    if not rule.startswith(SCIM_PREFIX) or "<path" not in rule:
        return rule
    parts = request.path[len(SCIM_PREFIX) :].strip("/").split("/")
    if parts[0] not in SCIM_ENDPOINTS:
        return f"{SCIM_PREFIX}/<other>"
    label = f"{SCIM_PREFIX}/{parts[0]}"
    if len(parts) > 1:
        label += "/.search" if parts[1] == ".search" else "/<id>"
    return label


def readiness(service: ServiceState) -> dict[str, str]:
    """Each readiness check by name, ``"ok"`` or why not."""
    checks: dict[str, str] = {}
    try:
        database.obj.execute_sql("SELECT 1")
        checks["store"] = "ok"
        version, latest = current_version(), latest_version()
        checks["migrations"] = "ok" if version == latest else f"schema at {version}, code expects {latest}"
    except peewee.PeeweeException as error:
        database.obj.close()
        checks["store"] = f"unreachable: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        checks["migrations"] = "unknown"
    if service.draining:
        checks["scheduler"] = "draining"
    elif service.scheduler is None:
        checks["scheduler"] = "not started"
    elif not service.scheduler.healthy():
        checks["scheduler"] = "not running"
    else:
        checks["scheduler"] = service.scheduler.start_trouble() or "ok"
    return checks


def sources_state(service: ServiceState, org_slug: str) -> list[dict[str, Any]]:
    """The org's configured sources with their run state from the store, the same whichever process or replica
    answers: ``running`` while a run holds the source's lease, wherever it runs."""
    configured = [s for s in service.config.sources if s.org == org_slug]
    names = [s.name for s in configured]
    rows = {row.name: row for row in Source.select().where(Source.name.in_(names))}
    running = lease.running(names, utcnow())
    quarantined = service.scheduler.quarantined if service.scheduler else service.config.server.quarantined
    answer = []
    for settings in configured:
        row = rows.get(settings.name)
        failures = row.consecutive_failures if row else 0
        answer.append(
            {
                "name": settings.name,
                "kind": settings.kind,
                "schedule": settings.schedule,
                "enabled": settings.enabled,
                "running": settings.name in running,
                "consecutive_failures": failures,
                "quarantined": quarantined(failures),
                "last_error": row.last_error if row else None,
                "last_run_at": iso(row.last_run_at) if row and row.last_run_at else None,
                "last_success_at": iso(row.last_success_at) if row and row.last_success_at else None,
            }
        )
    return answer


def _admin(service: ServiceState) -> tuple[tokens.Principal | None, tuple[Response, int]]:
    principal = tokens.authenticate(tokens.bearer(request.headers.get("Authorization")))
    if principal is None:
        response = _error(401, "a valid bearer token is required (syncd tokens create --org ORG --scope admin)")
        response[0].headers["WWW-Authenticate"] = 'Bearer realm="syncd-admin"'
        return None, response
    if principal.scope != "admin":
        return None, _error(403, f"this token has scope {principal.scope!r}; the admin API needs scope 'admin'")
    return principal, (Response(), 200)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message, status=status), status


def create_metrics_app(state: ServiceState, token: str | None = None) -> Flask:
    """The metrics listener's app: ``GET /metrics`` only, behind ``Authorization: Bearer TOKEN`` when ``token`` is set.

    The exposition and its Content-Type are prometheus-client's own, negotiated from ``Accept`` (text 0.0.4 or
    OpenMetrics). A scrape also refreshes the scheduler's health gauge.
    """
    app = Flask("syncd.metrics")

    @app.get("/metrics")
    def prometheus() -> Response | tuple[Response, int]:
        if token is not None and not tokens.bearer_matches(request.headers.get("Authorization", ""), token):
            answer = jsonify(detail="metrics need Authorization: Bearer <the token in server.metrics_token_file>")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="syncd metrics"'
            return answer, 401
        if state.scheduler is not None:
            state.scheduler.healthy()
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        # content_type, not mimetype: Flask appends "; charset=utf-8" to a mimetype, and the library's already has it.
        return Response(body, content_type=content_type)

    return app
