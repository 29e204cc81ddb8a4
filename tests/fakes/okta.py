"""A fake Okta org: a real HTTP server on 127.0.0.1 that speaks the parts of the Okta management API syncd reads.

It follows the published behaviour rather than what the connector happens to send:

- Auth: ``Authorization: SSWS <api token>``, or ``Bearer <access token>`` from ``POST /oauth2/v1/token``
  (client credentials with a ``private_key_jwt`` client assertion whose signature is checked against the client's
  registered public key; ``aud`` must be the token URL, ``iss`` = ``sub`` = client id, ``exp`` at most an hour
  ahead, an optional ``jti`` never seen before; developer.okta.com, "Implement OAuth for Okta with a service
  app", "Create and sign the JWT"). Access tokens expire; an expired or unknown one gets 401 ``E0000011``; a missing
  scope gets 403 ``E0000006``.
- Lists page with ``limit`` (capped at the documented maximum) and an opaque ``after`` cursor that appears only in
  ``Link: <…>; rel="next"``. ``GET /api/v1/users`` without ``filter`` hides DEPROVISIONED users.
- ``filter`` expressions: ``eq gt ge lt le sw``, ``and``, ``or`` and parentheses over ``status``, ``lastUpdated``,
  ``lastMembershipUpdated``, ``type``, ``id``, ``profile.*`` and ``eventType``; a bad one gets 400 ``E0000031``.
- Rate limits: per-bucket fixed windows with ``X-Rate-Limit-Limit/-Remaining/-Reset`` on every answer and 429
  ``E0000047`` past the limit.
- System Log: ``GET /api/v1/logs`` polling (no ``until``) always carries a next link, also on an empty page.
- Faults on demand: a status (500, 503 …) for matching requests, a truncated body, malformed JSON, a cut
  connection; and a per-request latency.

Timestamps and the ``Date`` header use the fake's clock (real time plus :meth:`FakeOkta.advance`), so tests can
move time forward without sleeping.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

USERS_MAX = 200
GROUPS_MAX = 10_000
MEMBERS_MAX = 1000
LOGS_MAX = 1000
DEFAULT_RATE_LIMITS = {
    "/oauth2/v1/token": 600,
    "/api/v1/users": 600,
    "/api/v1/groups": 500,
    "/api/v1/logs": 120,
}
SCOPE_OF = {"/api/v1/users": "okta.users.read", "/api/v1/groups": "okta.groups.read", "/api/v1/logs": "okta.logs.read"}
BASE = "__OKTA_BASE__"


class FilterError(ValueError):
    pass


@dataclass
class Fault:
    """Misbehave on requests whose path starts with ``path``: after ``skip`` good ones, ``times`` bad ones."""

    path: str
    kind: str  # "status" | "truncate" | "malformed" | "cut" | "echo" (an error quoting the request, as proxies do)
    status: int = 500
    skip: int = 0
    times: int = 1
    seen: int = 0
    fired: int = 0

    def fires(self, path: str) -> bool:
        if not path.startswith(self.path):
            return False
        self.seen += 1
        if self.seen > self.skip and self.fired < self.times:
            self.fired += 1
            return True
        return False


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    status: int = 0


@dataclass
class _Client:
    public_key: Any
    scopes: frozenset[str]


@dataclass
class _Window:
    start: float = 0.0
    used: int = 0


@dataclass
class _Store:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_json: dict[str, bytes] = field(default_factory=dict)
    user_order: list[str] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_json: dict[str, bytes] = field(default_factory=dict)
    group_order: list[str] = field(default_factory=list)
    members: dict[str, set[str]] = field(default_factory=dict)
    sorted_members: dict[str, list[str]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


class FakeOkta:
    """The org's state, its fault plan, and the server that serves it; use as a context manager."""

    def __init__(
        self,
        api_token: str = "fake-okta-api-token-0123456789",
        latency: float = 0.0,
        rate_limits: dict[str, int] | None = None,
        rate_window: float = 60.0,
        token_lifetime: float = 3600.0,
    ) -> None:
        self.api_token = api_token
        self.api_token_scopes = frozenset(SCOPE_OF.values())
        self.latency = latency
        self.rate_limits = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.rate_window = rate_window
        self.token_lifetime = token_lifetime
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.tokens_issued = 0
        self.issued_cursors: set[str] = set()
        self.peak_usage: dict[str, int] = {}
        self.in_flight = 0
        self.peak_in_flight = 0
        self.expire_tokens_after: int | None = None
        self._store = _Store()
        self._clients: dict[str, _Client] = {}
        self._access: dict[str, tuple[str, frozenset[str], float]] = {}
        self._jtis: set[str] = set()
        self._windows: dict[str, _Window] = {}
        self._offset = 0.0
        self._sequence = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeOkta:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-okta", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOkta:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- clock -----------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        """Move the org's clock forward (timestamps and ``Date``), as if time had passed."""
        self._offset += seconds

    def _stamp(self) -> str:
        moment = self.now()
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    # -- the directory ---------------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._sequence += 1
        return f"{prefix}{self._sequence:017d}"

    def add_user(self, login: str, status: str = "ACTIVE", **profile: Any) -> str:
        with self._lock:
            uid = self._next_id("00u")
            stamp = self._stamp()
            first, _, rest = login.partition("@")[0].partition(".")
            user = {
                "id": uid,
                "status": status,
                "created": stamp,
                "activated": None if status == "STAGED" else stamp,
                "statusChanged": stamp,
                "lastLogin": None,
                "lastUpdated": stamp,
                "passwordChanged": None,
                "type": {"id": "oty00000000000000001"},
                "profile": {
                    "firstName": first.title() or "First",
                    "lastName": rest.title() or "Last",
                    "mobilePhone": None,
                    "secondEmail": None,
                    "login": login,
                    "email": login,
                    **profile,
                },
                "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
                "_links": {"self": {"href": f"{BASE}/api/v1/users/{uid}"}},
            }
            self._store.users[uid] = user
            self._store.user_order.append(uid)
            self._store.user_json[uid] = json.dumps(user).encode()
            return uid

    def update_user(self, uid: str, status: str | None = None, **profile: Any) -> None:
        with self._lock:
            user = self._store.users[uid]
            stamp = self._stamp()
            if status is not None and status != user["status"]:
                user["status"] = status
                user["statusChanged"] = stamp
            user["profile"].update(profile)
            user["lastUpdated"] = stamp
            self._store.user_json[uid] = json.dumps(user).encode()

    def delete_user(self, uid: str) -> None:
        """Delete a user for good; like Okta, only a DEPROVISIONED user can be deleted, and memberships go too."""
        with self._lock:
            user = self._store.users[uid]
            assert user["status"] == "DEPROVISIONED", "Okta deletes only deactivated users"
            for gid, members in self._store.members.items():
                if uid in members:
                    members.discard(uid)
                    self._store.sorted_members.pop(gid, None)
            del self._store.users[uid], self._store.user_json[uid]
            self._store.user_order.remove(uid)
            self._event("user.lifecycle.delete.completed", [_target(uid, "User", user["profile"]["login"])])

    def add_group(self, name: str, type: str = "OKTA_GROUP", description: str | None = None) -> str:
        with self._lock:
            gid = self._next_id("00g")
            stamp = self._stamp()
            group = {
                "id": gid,
                "created": stamp,
                "lastUpdated": stamp,
                "lastMembershipUpdated": stamp,
                "objectClass": ["okta:user_group"],
                "type": type,
                "profile": {"name": name, "description": description},
                "_links": {"users": {"href": f"{BASE}/api/v1/groups/{gid}/users"}},
            }
            self._store.groups[gid] = group
            self._store.group_order.append(gid)
            self._store.group_json[gid] = json.dumps(group).encode()
            self._store.members[gid] = set()
            return gid

    def rename_group(self, gid: str, name: str) -> None:
        with self._lock:
            group = self._store.groups[gid]
            group["profile"]["name"] = name
            group["lastUpdated"] = self._stamp()
            self._store.group_json[gid] = json.dumps(group).encode()

    def delete_group(self, gid: str) -> None:
        with self._lock:
            group = self._store.groups.pop(gid)
            del self._store.group_json[gid], self._store.members[gid]
            self._store.sorted_members.pop(gid, None)
            self._store.group_order.remove(gid)
            self._event("group.lifecycle.delete", [_target(gid, "UserGroup", group["profile"]["name"])])

    def add_members(self, gid: str, uids: list[str], log: bool = True) -> None:
        with self._lock:
            members = self._store.members[gid]
            for uid in uids:
                if uid not in members:
                    members.add(uid)
                    if log:
                        self._membership_event("group.user_membership.add", gid, uid)
            self._touch_membership(gid)

    def remove_member(self, gid: str, uid: str) -> None:
        with self._lock:
            self._store.members[gid].discard(uid)
            self._membership_event("group.user_membership.remove", gid, uid)
            self._touch_membership(gid)

    def _touch_membership(self, gid: str) -> None:
        group = self._store.groups[gid]
        group["lastMembershipUpdated"] = self._stamp()
        self._store.group_json[gid] = json.dumps(group).encode()
        self._store.sorted_members.pop(gid, None)

    def _membership_event(self, kind: str, gid: str, uid: str) -> None:
        user, group = self._store.users[uid], self._store.groups[gid]
        self._event(
            kind,
            [_target(uid, "User", user["profile"]["login"]), _target(gid, "UserGroup", group["profile"]["name"])],
        )

    def _event(self, kind: str, targets: list[dict[str, Any]]) -> None:
        self._store.events.append(
            {
                "uuid": secrets.token_hex(16),
                "published": self._stamp(),
                "eventType": kind,
                "severity": "INFO",
                "displayMessage": kind,
                "actor": {"id": "00u00000000000000000", "type": "User", "alternateId": "admin@example.com"},
                "outcome": {"result": "SUCCESS"},
                "target": targets,
            }
        )

    def user_id(self, login: str) -> str:
        return next(uid for uid, user in self._store.users.items() if user["profile"]["login"] == login)

    # -- credentials and faults ------------------------------------------------------------------------------

    def register_client(self, client_id: str, public_key: Any, scopes: tuple[str, ...]) -> None:
        self._clients[client_id] = _Client(public_key, frozenset(scopes))

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = {token: (cid, scopes, 0.0) for token, (cid, scopes, _) in self._access.items()}

    def exhaust(self, bucket: str) -> None:
        """Use up the current window of a bucket, as another integration of the org would."""
        with self._lock:
            real = time.time()
            self._windows[bucket] = _Window(real - real % self.rate_window, self.rate_limits[bucket])

    def fail(self, path: str, status: int = 500, skip: int = 0, times: int = 1) -> Fault:
        fault = Fault(path, "status", status=status, skip=skip, times=times)
        self.faults.append(fault)
        return fault

    def inject(self, path: str, kind: str, skip: int = 0, times: int = 1) -> Fault:
        fault = Fault(path, kind, skip=skip, times=times)
        self.faults.append(fault)
        return fault

    def count(self, path_prefix: str = "", method: str | None = None) -> int:
        return sum(1 for s in self.seen if s.path.startswith(path_prefix) and (method is None or s.method == method))

    # -- serving ---------------------------------------------------------------------------------------------

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            return next((fault for fault in self.faults if fault.fires(path)), None)

    def _rate(self, path: str) -> tuple[dict[str, str], bool]:
        """Count the request in its bucket; headers to send and whether it is over the limit."""
        bucket = max((b for b in self.rate_limits if path.startswith(b)), key=len, default=None)
        if bucket is None:
            return {}, False
        limit = self.rate_limits[bucket]
        with self._lock:
            real = time.time()
            start = real - real % self.rate_window
            window = self._windows.setdefault(bucket, _Window(start))
            if window.start != start:
                window.start, window.used = start, 0
            over = window.used >= limit
            if not over:
                window.used += 1
                self.peak_usage[bucket] = max(self.peak_usage.get(bucket, 0), window.used)
            reset = int(start + self.rate_window + self._offset + 0.999)
            headers = {
                "X-Rate-Limit-Limit": str(limit),
                "X-Rate-Limit-Remaining": str(max(0, limit - window.used)),
                "X-Rate-Limit-Reset": str(reset),
            }
        return headers, over

    def _authorize(self, header: str | None, path: str) -> tuple[int, str] | None:
        """None when allowed, else (status, error code) per Okta."""
        scheme, _, credential = (header or "").partition(" ")
        if scheme == "SSWS" and secrets.compare_digest(credential, self.api_token):
            granted = self.api_token_scopes
        elif scheme == "Bearer" and credential in self._access:
            _, granted, expires = self._access[credential]
            if time.monotonic() >= expires:
                return 401, "E0000011"
        else:
            return 401, "E0000011"
        needed = next((scope for prefix, scope in SCOPE_OF.items() if path.startswith(prefix)), None)
        if needed and needed not in granted:
            return 403, "E0000006"
        return None

    def _token(self, base: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST /oauth2/v1/token``: client credentials with a private_key_jwt assertion (RFC 7523)."""
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant_type is not supported."}
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return 401, {"error": "invalid_client", "error_description": "client_assertion_type is invalid."}
        assertion = form.get("client_assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            client = self._clients[claims.get("iss")]
            claims = jwt.decode(
                assertion,
                client.public_key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"],
                audience=f"{base}/oauth2/v1/token",
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except (jwt.PyJWTError, KeyError, TypeError):
            return 401, {
                "error": "invalid_client",
                "error_description": "The client_assertion signature or claims are invalid.",
            }
        replayed = "jti" in claims and claims["jti"] in self._jtis
        if claims["sub"] != claims["iss"] or claims["exp"] - time.time() > 3600 or replayed:
            return 401, {"error": "invalid_client", "error_description": "The client_assertion token is invalid."}
        if "jti" in claims:
            self._jtis.add(claims["jti"])
        scopes = form.get("scope", "").split()
        refused = [s for s in scopes if s not in client.scopes]
        if not scopes or refused:
            return 400, {
                "error": "invalid_scope",
                "error_description": f"The following scopes are not allowed: {' '.join(refused) or '(none asked)'}",
            }
        token = "fake-at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = (claims["iss"], frozenset(scopes), time.monotonic() + self.token_lifetime)
            self.tokens_issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime),
            "access_token": token,
            "scope": " ".join(scopes),
        }

    def _list(self, path: str, query: dict[str, str]) -> tuple[list[bytes], str | None]:
        """The JSON items of one page and the ``after`` of the next page (None when this is the last)."""
        store = self._store
        predicate = _parse_filter(query["filter"]) if "filter" in query else None
        if path == "/api/v1/users":
            limit, order, source = USERS_MAX, store.user_order, store.users
            blobs = store.user_json
            if predicate is None:

                def predicate(user: dict[str, Any]) -> bool:
                    return user["status"] != "DEPROVISIONED"

        elif path == "/api/v1/groups":
            limit, order, source, blobs = GROUPS_MAX, store.group_order, store.groups, store.group_json
        else:
            match = re.fullmatch(r"/api/v1/groups/([^/]+)/users", path)
            assert match
            gid = match.group(1)
            if gid not in store.members:
                raise KeyError(gid)
            order = store.sorted_members.get(gid) or sorted(store.members[gid])
            store.sorted_members[gid] = order
            limit, source, blobs = MEMBERS_MAX, store.users, store.user_json
        limit = _limit(query, limit)
        start = bisect.bisect_right(order, _cursor(query["after"])) if "after" in query else 0
        page: list[bytes] = []
        last = None
        for key in order[start:]:
            if predicate is None or predicate(source[key]):
                if len(page) == limit:
                    return page, last
                page.append(blobs[key])
            last = key
        return page, None

    def _logs(self, query: dict[str, str]) -> tuple[list[bytes], str | None]:
        """System Log: ``since``/``after``, ascending; polling (no ``until``) always gives a next cursor."""
        events = self._store.events
        predicate = _parse_filter(query["filter"]) if "filter" in query else None
        limit = _limit(query, LOGS_MAX, default=100)
        if "after" in query:
            cursor = _cursor(query["after"])
            if not cursor.isdigit():
                raise FilterError("after")
            start = int(cursor)
        else:
            since = query.get("since") or _iso(self.now() - timedelta(days=7))
            start = next((i for i, e in enumerate(events) if e["published"] >= since), len(events))
        page: list[bytes] = []
        position = start
        while position < len(events) and len(page) < limit:
            if predicate is None or predicate(events[position]):
                page.append(json.dumps(events[position]).encode())
            position += 1
        polling = "until" not in query
        return page, str(position) if polling or position < len(events) else None


def _target(oid: str, kind: str, name: str) -> dict[str, Any]:
    return {"id": oid, "type": kind, "alternateId": name, "displayName": name, "detailEntry": None}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _limit(query: dict[str, str], ceiling: int, default: int | None = None) -> int:
    raw = query.get("limit")
    if raw is None:
        return default or ceiling
    if not raw.isdigit() or int(raw) < 1:
        raise FilterError(f"limit {raw!r}")
    return min(int(raw), ceiling)


def _opaque(key: str) -> str:
    return base64.urlsafe_b64encode(f"cursor:{key}".encode()).decode().rstrip("=")


def _cursor(after: str) -> str:
    try:
        text = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
    except ValueError:
        raise FilterError("after") from None
    if not text.startswith("cursor:"):
        raise FilterError("after")
    return text.removeprefix("cursor:")


_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*)')
_OPERATORS = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
    "sw": lambda a, b: isinstance(a, str) and a.startswith(b),
}


def _parse_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """Okta filter syntax (developer.okta.com, "Filter"): ``attr op "value"``, ``and``, ``or``, parentheses."""
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise FilterError(text)
        tokens.append(match.group(1))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> str:
        nonlocal index
        if index >= len(tokens):
            raise FilterError(text)
        index += 1
        return tokens[index - 1]

    def expression() -> Callable[[dict[str, Any]], bool]:
        terms = [conjunction()]
        while peek() == "or":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else lambda obj: any(t(obj) for t in terms)

    def conjunction() -> Callable[[dict[str, Any]], bool]:
        factors = [factor()]
        while peek() == "and":
            take()
            factors.append(factor())
        return factors[0] if len(factors) == 1 else lambda obj: all(f(obj) for f in factors)

    def factor() -> Callable[[dict[str, Any]], bool]:
        if peek() == "(":
            take()
            inner = expression()
            if take() != ")":
                raise FilterError(text)
            return inner
        attribute, operator, value = take(), take(), take()
        if operator not in _OPERATORS or not value.startswith('"'):
            raise FilterError(text)
        compare, literal, path = _OPERATORS[operator], json.loads(value), attribute.split(".")

        def test(obj: dict[str, Any]) -> bool:
            current: Any = obj
            for part in path:
                current = current.get(part) if isinstance(current, dict) else None
            return compare(current, literal)

        return test

    result = expression()
    if index != len(tokens):
        raise FilterError(text)
    return result


_ERRORS = {
    "E0000011": "Invalid token provided",
    "E0000006": "You do not have permission to perform the requested action",
    "E0000007": "Not found: Resource not found",
    "E0000031": "Invalid search criteria.",
    "E0000047": "API call exceeded rate limit due to too many requests.",
    "E0000009": "Internal Server Error",
}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOkta
    protocol_version = "HTTP/1.1"
    server_version = "FakeOkta/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(self.fake.now().timestamp(), usegmt=True)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        fake = self.fake
        with fake._lock:
            fake.in_flight += 1
            fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
        try:
            self._answer(method)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _answer(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(method, path, query)
        with fake._lock:
            fake.seen.append(seen)
            if fake.expire_tokens_after is not None and path.startswith("/api/"):
                fake.expire_tokens_after -= 1
                if fake.expire_tokens_after < 0:
                    fake.expire_tokens_after = None
                    fake.expire_access_tokens()
        if fake.latency:
            time.sleep(fake.latency)
        base = f"http://{self.headers.get('Host')}"
        rate_headers, over = fake._rate(path)
        if over:
            return self._error(seen, 429, "E0000047", rate_headers)
        fault = fake._fault_for(path)
        if fault is not None and fault.kind == "cut":
            seen.status = -1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault is not None and fault.kind == "status":
            return self._error(seen, fault.status, "E0000009", rate_headers)
        if fault is not None and fault.kind == "echo":
            quoted = f"Authorization: {self.headers.get('Authorization')} body: {body.decode('utf-8', 'replace')}"
            if path.startswith("/oauth2/"):
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                echo = f"client_assertion as received: {form.get('client_assertion')}"
                answer = {"error": "invalid_client", "error_description": echo}
                return self._send(seen, fault.status, json.dumps(answer).encode(), rate_headers)
            return self._error(seen, fault.status, "E0000009", rate_headers, summary=quoted)
        if method == "POST" and path == "/oauth2/v1/token":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            status, answer = fake._token(base, form)
            return self._send(seen, status, json.dumps(answer).encode(), rate_headers, fault=fault)
        if method != "GET":
            return self._error(seen, 405, "E0000022", rate_headers)
        refused = fake._authorize(self.headers.get("Authorization"), path)
        if refused is not None:
            extra = dict(rate_headers)
            if (self.headers.get("Authorization") or "").startswith("Bearer"):
                error = "invalid_token" if refused[0] == 401 else "insufficient_scope"
                extra["WWW-Authenticate"] = f'Bearer authorization_uri="{base}/oauth2/v1/authorize", error="{error}"'
            return self._error(seen, refused[0], refused[1], extra)
        try:
            with fake._lock:
                if path == "/api/v1/logs":
                    items, after = fake._logs(query)
                elif re.fullmatch(r"/api/v1/groups/[^/]+", path):
                    gid = path.rsplit("/", 1)[1]
                    if gid not in fake._store.group_json:
                        return self._error(seen, 404, "E0000007", rate_headers)
                    blob = fake._store.group_json[gid].replace(BASE.encode(), base.encode())
                    return self._send(seen, 200, blob, rate_headers, fault=fault)
                elif path in ("/api/v1/users", "/api/v1/groups") or re.fullmatch(r"/api/v1/groups/[^/]+/users", path):
                    items, after = fake._list(path, query)
                else:
                    return self._error(seen, 404, "E0000007", rate_headers)
        except FilterError:
            return self._error(seen, 400, "E0000031", rate_headers)
        except KeyError:
            return self._error(seen, 404, "E0000007", rate_headers)
        links = [f'<{base}{self.path}>; rel="self"']
        if after is not None:
            next_query = {k: v for k, v in query.items() if k != "after"}
            next_query["after"] = _opaque(after)
            with fake._lock:
                fake.issued_cursors.add(next_query["after"])
            links.append(f'<{base}{path}?{urlencode(next_query)}>; rel="next"')
        payload = (b"[" + b",".join(items) + b"]").replace(BASE.encode(), base.encode())
        return self._send(seen, 200, payload, rate_headers, links=links, fault=fault)

    def _error(self, seen: Seen, status: int, code: str, headers: dict[str, str], summary: str | None = None) -> None:
        body = {
            "errorCode": code,
            "errorSummary": summary or _ERRORS.get(code, "Error"),
            "errorLink": code,
            "errorId": "oae" + secrets.token_hex(8),
            "errorCauses": [],
        }
        self._send(seen, status, json.dumps(body).encode(), headers)

    def _send(
        self,
        seen: Seen,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        links: list[str] | None = None,
        fault: Fault | None = None,
    ) -> None:
        seen.status = status
        if fault is not None and fault.kind == "malformed":
            payload = payload[: max(1, len(payload) // 2)] + b"<html>upstream proxy error</html>"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        for link in links or []:
            self.send_header("Link", link)
        self.end_headers()
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)
