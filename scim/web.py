"""The Flask integration of scim2-server: framework in, framework out (docs/architecture.md, "How the code is written").

Each request: bound the body (413 above ``server.max_body_bytes``), authenticate the bearer token with
:func:`syncd.admin.tokens.authenticate` (401 with a SCIM error body and ``WWW-Authenticate``, RFC 7644 §2 and RFC 6750 §3),
take the org from the token, and serve the request with a handler over that org's storage only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import flask
import peewee
from scim2_models import (
    Error,
    ForbiddenException,
    InvalidFilterException,
    InvalidValueException,
    PayloadTooLargeException,
    Resource,
    SCIMException,
    UnauthorizedException,
)
from scim2_server.applications.base import BaseApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from werkzeug.exceptions import HTTPException

from scim.resources import SyncdStorage
from scim.schema import build_provider
from scim.service import SyncdHandler, SyncdService
from scim.storage import Tenant
from syncd.admin import tokens
from syncd.config import Config
from syncd.logs import log_event
from syncd.store import dialect
from syncd.store.db import database
from syncd.store.models import Organization, Source
from syncd.sync.orgs import scim_source_name

log = logging.getLogger("syncd.scim")
SCIM_PREFIX = "/scim/v2"
TENANT_TTL_SECONDS = 5.0
RETRY_AFTER_SECONDS = 5
# PostgreSQL SQLSTATEs of a write that lost a race for a lock or the connection: lock_not_available,
# serialization_failure, deadlock_detected, query_canceled (lock/statement timeout), admin_shutdown.
RETRYABLE_SQLSTATES = {"55P03", "40001", "40P01", "57014", "57P01"}

# A NUL character, raw or as the JSON escape \u0000 (not preceded by an escaping backslash). PostgreSQL text cannot
# hold it, so it is refused up front on every backend alike.
NUL = re.compile(r"\x00|(?<!\\)(?:\\\\)*\\u0000")

READ_OPERATIONS = {
    Operation.query,
    Operation.search,
    Operation.search_with_body,
    Operation.service_provider_config,
    Operation.resource_types,
    Operation.resource_type,
    Operation.schemas,
    Operation.schema,
}


class FlaskScim(BaseApplication):
    """Serves SCIM requests arriving through Flask, each as the tenant its token names."""

    def __init__(self, config: Config, current: Callable[[], Config] | None = None) -> None:
        self.current = current or (lambda: config)
        self._config_seen = config
        provider = build_provider(config.server.max_body_bytes)
        super().__init__(provider, SyncdService(provider, config.server.max_body_bytes))
        self.max_body_bytes = config.server.max_body_bytes
        self.models: dict[str, type[Resource[Any]]] = {
            str(rt.name): self.service.get_model(rt) for rt in provider.resource_types
        }
        self.log = log
        self.tenants: dict[int, tuple[float, Tenant]] = {}

    # -- request -------------------------------------------------------------

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        """Log a failed request as a fixed event name with the text in ``detail`` (the base class logs the text as
        the message, which our formatter makes the event: ``event="404 User 'x' not found"``), then answer with
        the SCIM error (RFC 7644 §3.12). A client error is info without traceback; anything else is a bug."""
        if isinstance(exception, SCIMException):
            log_event(log, "scim.request.refused", status=exception.status, detail=str(exception))
        else:
            log.error("scim.request.failed", exc_info=exception, extra={"syncd_fields": {"detail": str(exception)}})
        return self.service.error_response(exception)

    def read_request(self, path: str) -> ScimRequest:
        incoming = flask.request
        base_url = incoming.base_url
        suffix = "/" + path if path else ""
        if suffix and base_url.endswith(suffix):
            base_url = base_url[: -len(suffix)]
        base_url = base_url.rstrip("/")
        headers = list(incoming.headers.items())
        return ScimRequest(
            method=incoming.method,
            base_url=base_url,
            path=self.split_path("/" + path),
            query=dict(incoming.args.items()),
            headers=headers,
        )

    def read_body(self) -> bytes:
        """Read at most ``max_body_bytes``; a larger body is a 413 (RFC 7644 §3.12 has no scimType for it)."""
        incoming = flask.request
        limit = self.max_body_bytes
        if incoming.content_length is not None and incoming.content_length > limit:
            raise PayloadTooLargeException(detail=f"the request body exceeds the limit of {limit} bytes")
        body = incoming.stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLargeException(detail=f"the request body exceeds the limit of {limit} bytes")
        if NUL.search(body.decode("utf-8", "replace")):
            raise InvalidValueException(detail="the request body holds a NUL character, which no attribute may hold")
        return body

    @staticmethod
    def check_query(request: ScimRequest) -> None:
        for name, value in request.query.items():
            if NUL.search(value):
                if name == "filter":
                    raise InvalidFilterException(detail="the filter holds a NUL character")
                raise InvalidValueException(detail=f"the {name} parameter holds a NUL character")

    def authenticate(self, request: ScimRequest) -> tokens.Principal:
        principal = tokens.authenticate(tokens.bearer(request.header("Authorization")))
        if principal is None:
            raise UnauthorizedException(
                detail="a valid bearer token is required; create one with 'syncd tokens create --scope scim'"
            )
        if principal.scope != "scim":
            raise ForbiddenException(detail=f"this token has scope {principal.scope!r}; SCIM needs a 'scim' token")
        return principal

    def tenant_of(self, principal: tokens.Principal) -> Tenant:
        """The org's SCIM source and match key; kept a few seconds, as both change only with the org's config."""
        cached = self.tenants.get(principal.token_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        tenant = self._load_tenant(principal)
        self.tenants[principal.token_id] = (time.monotonic() + TENANT_TTL_SECONDS, tenant)
        return tenant

    @staticmethod
    def _load_tenant(principal: tokens.Principal) -> Tenant:
        row = (
            Source.select(Source.id, Organization.match_on)
            .join(Organization)
            .where((Source.org == principal.org_id) & (Source.name == scim_source_name(principal.org_slug)))
            .tuples()
            .first()
        )
        if row is None:
            raise ForbiddenException(detail=f"org {principal.org_slug!r} has no SCIM source")
        source_id, match_on = row
        return Tenant(org_id=principal.org_id, source_id=source_id, match_on=match_on, actor=principal.actor)

    def serve(self, path: str) -> flask.Response:
        request = self.read_request(path)
        config = self.current()
        if config is not self._config_seen:  # reloaded: a tenant's match_on may have changed with it
            self.tenants.clear()
            self._config_seen = config
        try:
            request.body = self.read_body()
            self.check_query(request)
            operation = self.service.match(request).operation
            if not self.needs_auth(request):
                handler = SyncdHandler(self.service, SyncdStorage(Tenant(0, 0, "email", "anonymous"), self.models))
                response = handler.handle(request)
            else:
                principal = self.authenticate(request)
                request.subject = principal
                storage = SyncdStorage(
                    self.tenant_of(principal), self.models, writing=operation not in READ_OPERATIONS, config=config
                )
                response = SyncdHandler(self.service, storage).handle(request)
        except Exception as exception:
            response = unavailable(exception) or self.handle_exception(request, exception)
        return self.send(self.finalize_response(request, response))

    @staticmethod
    def send(response: ScimResponse) -> flask.Response:
        body = b"" if response.body is None else json.dumps(response.body).encode()
        return flask.Response(body, status=int(response.status), headers=dict(response.headers))


def unavailable(exception: Exception) -> ScimResponse | None:
    """503 with ``Retry-After`` for a write that could not get the database in time (RFC 7644 §3.12, RFC 9110
    §10.2.3): SQLite's ``database is locked`` once its busy timeout ran out behind a big sync, or PostgreSQL's lock,
    serialization and connection failures. IdPs retry a 503; a 500 would be reported as a failed provisioning.
    """
    text = str(exception).lower()
    lost = isinstance(exception, peewee.InterfaceError) or "could not connect" in text or "server closed" in text
    if not isinstance(exception, peewee.InterfaceError | peewee.OperationalError):
        return None
    # peewee wraps the driver's error: the original (with psycopg2's pgcode) is its first argument.
    origins = (exception, *exception.args[:1], exception.__cause__, exception.__context__)
    code = next((getattr(o, "pgcode", None) for o in origins if getattr(o, "pgcode", None)), None)
    if lost:
        cause = "the database connection was lost"
        with contextlib.suppress(Exception):  # the next request reconnects
            database.obj.close()
    elif "locked" in text or "busy" in text:
        cause = "the database is busy with a long write (a sync)"
    elif code in RETRYABLE_SQLSTATES:
        cause = "the database could not serve the request now"
    else:
        return None
    log_event(log, "scim.request.unavailable", logging.WARNING, status=503, detail=f"{cause} ({exception})")
    error = Error(status=503, detail=f"{cause}; nothing was changed, retry after {RETRY_AFTER_SECONDS} seconds")
    response = ScimResponse(HTTPStatus.SERVICE_UNAVAILABLE, error.model_dump())
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def http_error(exception: HTTPException) -> flask.Response | HTTPException:
    """Flask's own answers under ``/scim/v2`` (an unknown method, a body over the limit) in RFC 7644 §3.12 form;
    elsewhere Flask's answer stands. Registered on the app, because routing fails before a blueprint is chosen."""
    if not flask.request.path.startswith(SCIM_PREFIX):
        return exception
    status = exception.code or 500
    detail = {
        405: f"method {flask.request.method} is not supported here; SCIM uses GET, POST, PUT, PATCH and DELETE",
        404: "no SCIM endpoint at this path; see /scim/v2/ResourceTypes",
        413: "the request body exceeds server.max_body_bytes",
    }.get(status, exception.description or HTTPStatus(status).phrase)
    body = json.dumps(Error(status=status, detail=detail).model_dump()).encode()
    response = flask.Response(body, status=status, content_type="application/scim+json")
    if status == 405:
        response.headers["Allow"] = "GET, POST, PUT, PATCH, DELETE"
    return response


def install(app: flask.Flask, blueprint: flask.Blueprint) -> None:
    """Mount the SCIM blueprint at ``/scim/v2`` with its SCIM-shaped HTTP errors."""
    app.register_blueprint(blueprint, url_prefix=SCIM_PREFIX)
    app.register_error_handler(HTTPException, http_error)


def create_blueprint(config: Config, current: Callable[[], Config] | None = None) -> flask.Blueprint:
    """The SCIM endpoints (RFC 7644 §3.2) as a blueprint; the service mounts it at ``/scim/v2``.

    ``current`` returns the live config (``syncd serve`` swaps it whole on SIGHUP); each request reconciles with the
    rules of the config it returns, so a reload reaches every later write. Without it, ``config`` stays."""
    scim = FlaskScim(config, current)
    blueprint = flask.Blueprint("scim", __name__)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @blueprint.route("/", defaults={"path": ""}, methods=methods, strict_slashes=False)
    @blueprint.route("/<path:path>", methods=methods)
    def serve(path: str) -> flask.Response:
        if database.obj is not None:
            dialect.of(database.obj).register_functions()
        return scim.serve(path)

    return blueprint


def create_app(config: Config) -> flask.Flask:
    """A WSGI app serving only SCIM at ``/scim/v2``, for tests and benchmarks; opens the configured store."""
    from syncd.store import open_database, upgrade

    if database.obj is None:
        open_database(config.database.url)
        upgrade()
    dialect.of(database.obj).register_functions()
    app = flask.Flask("syncd.scim")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    install(app, create_blueprint(config))
    return app
