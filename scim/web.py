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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import flask
import peewee
import werkzeug
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
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.urls import iri_to_uri

from scim import representation
from scim.resources import SyncdStorage
from scim.schema import MAX_RESULTS, build_provider
from scim.service import SyncdHandler, SyncdService
from scim.storage import Rows, Tenant
from syncd.admin import tokens
from syncd.config import Config
from syncd.logs import log_event
from syncd.store import dialect
from syncd.store.db import UNREACHABLE, database
from syncd.store.models import Organization, Source
from syncd.sync.orgs import scim_source_name

WSGIEnvironment = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]
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

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ENDPOINTS = frozenset({"Users", "Groups", "Me", "Bulk", ".search", "Schemas", "ResourceTypes", "ServiceProviderConfig"})
HOT_PATH = re.compile(r"/scim/v2/(?:(?:Users|Groups)(?:/[A-Za-z0-9._~-]+)?|ServiceProviderConfig|Schemas|ResourceTypes)")
"""The paths :class:`HotRoutes` answers: characters werkzeug's routing and URL building take as they are."""
PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
"""A path werkzeug neither quotes nor unquotes when it builds a URL."""
PLAIN_URI = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~-]*)*")
"""A URL that werkzeug's ``iri_to_uri`` gives back unchanged."""
URL_PARTS = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME")
"""What the base URL of a SCIM answer is made of, besides the path."""
DEFAULT_CONTENT_TYPE = "text/html; charset=utf-8"
"""What Flask's response adds when an answer names no Content-Type."""
STATUS_LINES: dict[int, str] = {}

DISCOVERY = frozenset({"ServiceProviderConfig", "Schemas", "ResourceTypes"})
DISCOVERY_CACHE_ENTRIES = 64
"""Discovery answers kept per path and base URL: the base URL comes from the Host header, so the cache is bounded."""
LOOKUP_PARAMETERS = frozenset({"filter", "startIndex", "count"})
CONDITIONAL_HEADERS = ("If-Match", "If-None-Match")

@dataclass(frozen=True)
class Answer:
    """A SCIM answer as it goes on the wire: status, headers (a mapping shared with the discovery cache: read only)
    and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Observer(Protocol):
    """What the serving process does around each request (``syncd serve``: request id, counters, log line)."""

    def begin(self, environ: WSGIEnvironment) -> Any: ...

    def end(self, begun: Any, method: str, endpoint: str, status: int) -> list[tuple[str, str]]:
        """Record the request; return the headers to add to its answer."""
        ...


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
        self.discovery: dict[tuple[str, ...], Answer] = {}
        self.base_urls: dict[tuple[str, ...], str] = {}

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

    def read_request(self, incoming: werkzeug.Request, path: str) -> ScimRequest:
        return ScimRequest(
            method=incoming.method,
            base_url=self.base_url(incoming, path),
            path=self.split_path("/" + path),
            query=dict(incoming.args.items()),
            headers=list(incoming.headers.items()),
        )

    def base_url(self, incoming: werkzeug.Request, path: str) -> str:
        """The root URL of the SCIM endpoints as the client sees it (RFC 7644 §3.1): the request's URL, as werkzeug
        builds it from the Host header and the WSGI environ, without ``path``. For a path werkzeug neither quotes nor
        unquotes, that root depends only on the scheme, host, server and script name, so it is built once per
        such key and kept (a bounded number, since the Host header is the client's)."""
        environ = incoming.environ
        suffix = "/" + path if path else ""
        if environ.get("PATH_INFO") != SCIM_PREFIX + suffix or not PLAIN_PATH.fullmatch(path):
            base_url = incoming.base_url
            if suffix and base_url.endswith(suffix):
                base_url = base_url[: -len(suffix)]
            return base_url.rstrip("/")
        key = tuple(str(environ.get(name, "")) for name in URL_PARTS)
        known = self.base_urls.get(key)
        if known is None:
            if len(self.base_urls) >= DISCOVERY_CACHE_ENTRIES:
                self.base_urls.clear()
            root = werkzeug.Request({**environ, "PATH_INFO": SCIM_PREFIX, "QUERY_STRING": ""})
            known = self.base_urls[key] = root.base_url.rstrip("/")
        return known

    def read_body(self, incoming: werkzeug.Request) -> bytes:
        """Read at most ``max_body_bytes``; a larger body is a 413 (RFC 7644 §3.12 has no scimType for it)."""
        environ = incoming.environ
        if environ.get("CONTENT_LENGTH") in (None, "", "0") and not environ.get("HTTP_TRANSFER_ENCODING"):
            return b""  # neither length nor chunks: the request has no body (RFC 9112 §6.3)
        limit = self.max_body_bytes
        if incoming.content_length is not None and incoming.content_length > limit:
            raise PayloadTooLargeException(detail=f"the request body exceeds the limit of {limit} bytes")
        body = incoming.stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLargeException(detail=f"the request body exceeds the limit of {limit} bytes")
        if body and NUL.search(body.decode("utf-8", "replace")):
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

    def serve(self, incoming: werkzeug.Request, path: str) -> Answer:
        """Answer one SCIM request: the Flask route and the hot routes (:class:`HotRoutes`) both come here."""
        if database.obj is not None:
            dialect.of(database.obj).register_functions()
        discovery = self.discovery_key(incoming, path)
        if discovery is not None and discovery[0] == "ServiceProviderConfig" and discovery in self.discovery:
            return self.discovery[discovery]  # no token, body or parameter to check (RFC 7643 §5)
        request = self.read_request(incoming, path)
        config = self.current()
        if config is not self._config_seen:  # reloaded: a tenant's match_on may have changed with it
            self.tenants.clear()
            self._config_seen = config
        try:
            request.body = self.read_body(incoming)
            self.check_query(request)
            if discovery is not None and discovery in self.discovery:
                if discovery[0] != "ServiceProviderConfig":
                    self.tenant_of(self.authenticate(request))
                return self.discovery[discovery]
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
        answer = Answer(int(response.status), dict(response.headers), self.body(response))
        if discovery is not None and response.status == HTTPStatus.OK:
            if len(self.discovery) >= DISCOVERY_CACHE_ENTRIES:
                self.discovery.clear()
            self.discovery[discovery] = answer
        return answer

    @staticmethod
    def discovery_key(incoming: werkzeug.Request, path: str) -> tuple[str, ...] | None:
        """The cache key of a discovery read (RFC 7644 §4): its path and what the base URL of its answer is made of.
        The answers are the same for the life of the process (the provider is built once); requests with parameters
        or a body are answered afresh."""
        environ = incoming.environ
        if (
            incoming.method != "GET"
            or path.split("/", 1)[0] not in DISCOVERY
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or environ.get("HTTP_TRANSFER_ENCODING")
        ):
            return None
        return (path, *(str(environ.get(name, "")) for name in URL_PARTS))

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


class HotRoutes:
    """WSGI middleware in front of Flask: the SCIM requests IdPs send most (``/Users``, ``/Groups``, one of them by
    id, the discovery endpoints; any SCIM method, a body with a ``Content-Length``) are answered by
    :meth:`FlaskScim.serve` straight from the WSGI environ, without Flask's request context, routing and response
    objects, which cost more than a stored read itself (docs/architecture.md, "SCIM hot path"). Every other request
    goes on to Flask (``flask``), whose route answers the same requests byte for byte.

    ``observer`` (``syncd serve``'s request id, log context, counters and request log line) is told when a hot
    request starts and ends, as Flask's request hooks are for the others."""

    def __init__(self, flask_app: WSGIApplication, scim: FlaskScim, observer: Observer | None = None) -> None:
        self.flask = flask_app
        self.scim = scim
        self.observer = observer

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path_info = environ.get("PATH_INFO", "")
        if method not in METHODS or environ.get("HTTP_TRANSFER_ENCODING") or not HOT_PATH.fullmatch(path_info):
            return self.flask(environ, start_response)
        path = path_info[len(SCIM_PREFIX) + 1 :]
        observer = self.observer
        observed = observer.begin(environ) if observer is not None else None
        status = 500
        try:
            incoming = werkzeug.Request(environ)
            incoming.max_content_length = self.scim.max_body_bytes
            answer = self.scim.serve(incoming, path)
        except Exception as exception:  # a bug: Flask would answer it as an internal server error
            log.error("scim.request.failed", exc_info=exception, extra={"syncd_fields": {"detail": str(exception)}})
            if isinstance(exception, UNREACHABLE) and database.obj is not None:
                database.obj.close()
            answer = internal_error()
        status = answer.status
        status_line, headers = wsgi_headers(answer)
        if observer is not None:
            headers.extend(observer.end(observed, method, endpoint_label(path), status))
        start_response(status_line, headers)
        return [answer.body]


def endpoint_label(path: str) -> str:
    """The metric label of a SCIM request's endpoint (``path`` after ``/scim/v2/``), by resource endpoint (RFC 7644
    §3.2: /Users, /Groups, /Users/<id>, /.search, /Schemas ...) so that ids, filters and arbitrary paths never become
    label values."""
    parts = path.strip("/").split("/")
    if parts[0] not in ENDPOINTS:
        return f"{SCIM_PREFIX}/<other>"
    label = f"{SCIM_PREFIX}/{parts[0]}"
    if len(parts) > 1:
        label += "/.search" if parts[1] == ".search" else "/<id>"
    return label


def internal_error() -> Answer:
    """What Flask answers under ``/scim/v2`` for an exception a route let through (:func:`http_error`)."""
    error = InternalServerError()
    body = json.dumps(Error(status=500, detail=error.description).model_dump()).encode()
    return Answer(500, {"Content-Type": "application/scim+json"}, body)


def wsgi_headers(answer: Answer) -> tuple[str, list[tuple[str, str]]]:
    """The status line and headers werkzeug sends for ``flask.Response(body, status=..., headers=...)`` of this
    answer (default Content-Type, Content-Length, ``Location`` / ``Content-Location`` as URIs, RFC 3987 §3.1), built
    without the response object; a status werkzeug treats specially (1xx, 204, 304) is left to werkzeug itself."""
    status = answer.status
    if status < 200 or status in (204, 304):
        response = flask.Response(answer.body, status=status, headers=answer.headers)
        return response.status, response.get_wsgi_headers({}).to_wsgi_list()
    line = STATUS_LINES.get(status)
    if line is None:
        line = STATUS_LINES[status] = flask.Response(status=status).status
    headers: list[tuple[str, str]] = []
    typed = sized = False
    for name, value in answer.headers.items():
        lowered = name.lower()
        if lowered in ("location", "content-location") and not PLAIN_URI.fullmatch(value):
            value = iri_to_uri(value)
        typed = typed or lowered == "content-type"
        sized = sized or lowered == "content-length"
        headers.append((name, value))
    if not typed:
        headers.append(("Content-Type", DEFAULT_CONTENT_TYPE))
    if not sized:
        headers.append(("Content-Length", str(len(answer.body))))
    return line, headers


def install(app: flask.Flask, blueprint: flask.Blueprint, observer: Observer | None = None) -> None:
    """Mount the SCIM blueprint at ``/scim/v2`` with its SCIM-shaped HTTP errors, and its hot routes in front of
    the app (:class:`HotRoutes`, told to ``observer``)."""
    app.register_blueprint(blueprint, url_prefix=SCIM_PREFIX)
    app.register_error_handler(HTTPException, http_error)
    scim = blueprint.scim  # type: ignore[attr-defined]
    app.wsgi_app = HotRoutes(app.wsgi_app, scim, observer)  # type: ignore[method-assign]


def create_blueprint(
    config: Config, current: Callable[[], Config] | None = None, *, stored_reads: bool = True
) -> flask.Blueprint:
    """The SCIM endpoints (RFC 7644 §3.2) as a blueprint; the service mounts it at ``/scim/v2`` with :func:`install`.

    ``current`` returns the live config (``syncd serve`` swaps it whole on SIGHUP); each request reconciles with the
    rules of the config it returns, so a reload reaches every later write. Without it, ``config`` stays.
    ``stored_reads=False`` answers every read and written User through the models (what the stored answers are
    compared with)."""
    scim = FlaskScim(config, current, stored_reads=stored_reads)
    blueprint = flask.Blueprint("scim", __name__)
    blueprint.scim = scim  # type: ignore[attr-defined]
    methods = list(METHODS)

    @blueprint.route("/", defaults={"path": ""}, methods=methods, strict_slashes=False)
    @blueprint.route("/<path:path>", methods=methods)
    def serve(path: str) -> flask.Response:
        answer = scim.serve(flask.request, path)
        return flask.Response(answer.body, status=answer.status, headers=answer.headers)

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
