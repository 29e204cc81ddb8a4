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

from scim import representation
from scim.resources import SyncdStorage
from scim.schema import MAX_RESULTS, build_provider
from scim.service import SyncdHandler, SyncdService
from scim.storage import Rows, Tenant
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

DISCOVERY = frozenset({"ServiceProviderConfig", "Schemas", "ResourceTypes"})
DISCOVERY_CACHE_ENTRIES = 64
"""Discovery answers kept per path and base URL: the base URL comes from the Host header, so the cache is bounded."""
LOOKUP_PARAMETERS = frozenset({"filter", "startIndex", "count"})
CONDITIONAL_HEADERS = ("If-Match", "If-None-Match")

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

    def __init__(
        self, config: Config, current: Callable[[], Config] | None = None, *, stored_reads: bool = True
    ) -> None:
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
        self.stored_reads = stored_reads
        self.discovery: dict[tuple[str, ...], tuple[int, dict[str, str], bytes]] = {}

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
        discovery = self.discovery_key(path)
        if discovery is not None and discovery[0] == "ServiceProviderConfig" and discovery in self.discovery:
            return self.cached(discovery)  # no token, body or parameter to check (RFC 7643 §5)
        request = self.read_request(path)
        config = self.current()
        if config is not self._config_seen:  # reloaded: a tenant's match_on may have changed with it
            self.tenants.clear()
            self._config_seen = config
        try:
            request.body = self.read_body()
            self.check_query(request)
            if discovery is not None and discovery in self.discovery:
                if discovery[0] != "ServiceProviderConfig":
                    self.tenant_of(self.authenticate(request))
                return self.cached(discovery)
            if not self.needs_auth(request):
                handler = SyncdHandler(self.service, SyncdStorage(Tenant(0, 0, "email", "anonymous"), self.models))
                response = handler.handle(request)
            else:
                principal = self.authenticate(request)
                request.subject = principal
                tenant = self.tenant_of(principal)
                stored = self.stored_read(request, path, tenant) if self.stored_reads else None
                if stored is not None:
                    response = stored
                else:
                    writing = self.service.match(request).operation not in READ_OPERATIONS
                    storage = SyncdStorage(tenant, self.models, writing=writing, config=config)
                    handler = SyncdHandler(self.service, storage, stored_responses=self.stored_reads)
                    response = handler.handle(request)
        except Exception as exception:
            response = unavailable(exception) or self.handle_exception(request, exception)
        response = self.finalize_response(request, response)
        if discovery is not None and response.status == HTTPStatus.OK:
            if len(self.discovery) >= DISCOVERY_CACHE_ENTRIES:
                self.discovery.clear()
            self.discovery[discovery] = (int(response.status), dict(response.headers), self.body(response))
        return self.send(response)

    @staticmethod
    def discovery_key(path: str) -> tuple[str, ...] | None:
        """The cache key of a discovery read (RFC 7644 §4): its path and what the base URL of its answer is made of.
        The answers are the same for the life of the process (the provider is built once); requests with parameters
        or a body are answered afresh."""
        incoming = flask.request
        environ = incoming.environ
        if (
            incoming.method != "GET"
            or path.split("/", 1)[0] not in DISCOVERY
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or environ.get("HTTP_TRANSFER_ENCODING")
        ):
            return None
        parts = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME")
        return (path, *(str(environ.get(name, "")) for name in parts))

    def cached(self, key: tuple[str, ...]) -> flask.Response:
        status, headers, body = self.discovery[key]
        return flask.Response(body, status=status, headers=headers)

    def stored_read(self, request: ScimRequest, path: str, tenant: Tenant) -> ScimResponse | None:
        """A GET of a user by id, or a ``userName`` / ``externalId`` lookup, answered from the stored
        representation (:mod:`scim.representation`); None for anything the model path must answer."""
        if request.method != "GET" or any(request.header(name) for name in CONDITIONAL_HEADERS):
            return None
        rows = Rows(tenant)
        if path.startswith("Users/") and not request.query:
            key = path[len("Users/") :]
            row = rows.user(key) if key and "/" not in key else None
            if row is None or not representation.stored_as_served(row):
                return None
            body = representation.user(row, rows.groups_of([key])[key], request.base_url)
            meta = body["meta"]
            return ScimResponse(HTTPStatus.OK, body, {"Content-Location": meta["location"], "ETag": meta["version"]})
        query = request.query
        if path != "Users" or "filter" not in query or not set(query) <= LOOKUP_PARAMETERS:
            return None
        count_text = query.get("count")
        if query.get("startIndex", "1") != "1" or (
            count_text is not None and not (count_text.isdigit() and 1 <= int(count_text) <= MAX_RESULTS)
        ):
            return None
        found = representation.lookup(query["filter"])
        if found is None:
            return None
        total, users = rows.users_where(*found, 0, int(count_text) if count_text else None)
        if not all(representation.stored_as_served(row) for row in users):
            return None
        groups = rows.groups_of([row.key for row in users])
        served = [representation.user(row, groups[row.key], request.base_url) for row in users]
        return ScimResponse(HTTPStatus.OK, representation.list_response(total, served))

    @staticmethod
    def body(response: ScimResponse) -> bytes:
        return b"" if response.body is None else json.dumps(response.body).encode()

    @classmethod
    def send(cls, response: ScimResponse) -> flask.Response:
        return flask.Response(cls.body(response), status=int(response.status), headers=dict(response.headers))


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


def create_blueprint(
    config: Config, current: Callable[[], Config] | None = None, *, stored_reads: bool = True
) -> flask.Blueprint:
    """The SCIM endpoints (RFC 7644 §3.2) as a blueprint; the service mounts it at ``/scim/v2``.

    ``current`` returns the live config (``syncd serve`` swaps it whole on SIGHUP); each request reconciles with the
    rules of the config it returns, so a reload reaches every later write. Without it, ``config`` stays.
    ``stored_reads=False`` answers every read and written User through the models (what the stored answers are
    compared with)."""
    scim = FlaskScim(config, current, stored_reads=stored_reads)
    blueprint = flask.Blueprint("scim", __name__)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @blueprint.route("/", defaults={"path": ""}, methods=methods, strict_slashes=False)
    @blueprint.route("/<path:path>", methods=methods)
    def serve(path: str) -> flask.Response:
        if database.obj is not None:
            dialect.of(database.obj).register_functions()
        return scim.serve(path)

    return blueprint


def create_app(config: Config, *, stored_reads: bool = True) -> flask.Flask:
    """A WSGI app serving only SCIM at ``/scim/v2``, for tests and benchmarks; opens the configured store."""
    from syncd.store import open_database, upgrade

    if database.obj is None:
        open_database(config.database.url)
        upgrade()
    dialect.of(database.obj).register_functions()
    app = flask.Flask("syncd.scim")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    install(app, create_blueprint(config, stored_reads=stored_reads))
    return app
