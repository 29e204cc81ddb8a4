"""A protocol-faithful fake of Microsoft Entra ID's token endpoint and Microsoft Graph's users/groups delta queries.

It is a real HTTPS server on 127.0.0.1 with a CA and server certificate generated at start, so msal and requests
talk to it exactly as to login.microsoftonline.com and graph.microsoft.com:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``POST /{tenant}/oauth2/v2.0/token`` (client
  credentials with a client secret or a certificate-signed client assertion; AADSTS errors as Entra words them;
  tokens that expire on the server's clock, which tests can move forward);
- ``GET /v1.0/users/delta`` and ``GET /v1.0/groups/delta`` with ``$select``, ``$filter=id eq ...``, ``Prefer:
  odata.maxpagesize``, opaque ``$skiptoken``/``$deltatoken`` links, ``@removed`` (reason ``changed`` for a
  restorable deletion, ``deleted`` for a purge), ``members@delta`` split over pages for large groups, nested groups,
  a user's ``manager`` relationship as ``manager@delta`` when ``$select`` names it (``$expand`` is not supported on
  delta; a removed manager is an entry with ``@removed``),
  replays and duplicates, synchronization reset (410 Gone with Location, or 400 ``syncStateNotFound``), throttling
  (429/503 with Retry-After, ``x-ms-throttle-limit-percentage``), permissions (403 Authorization_RequestDenied), and
  injected faults (malformed JSON, pages without links, 5xx, cut connections), with an optional latency per request.

The directory is mutable: tests change it between rounds with the methods below and every change is journalled, so
a delta round reports what changed since the round its deltaLink came from (docs: "Use delta query to track changes
in Microsoft Graph data", "Get incremental changes for groups", "Microsoft Graph throttling guidance").
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
#: Graph's largest directory page.
MAX_PAGE_SIZE = 999
#: Graph's default directory page when the client states no preference.
DEFAULT_PAGE_SIZE = 100


@dataclass
class Fault:
    """An answer to give instead of the real one to requests whose path contains ``path``."""

    path: str
    kind: str  # "status" | "invalid-json" | "no-links" | "cut" | "echo" (an error quoting the request, as proxies do)
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    times: int = 1


@dataclass
class Round:
    """One delta round in progress: its page plan and the watermark its deltaLink will carry."""

    collection: str
    select: tuple[str, ...]
    pages: list[list[tuple[Any, ...]]]
    watermark: int
    since: int
    ids: tuple[str, ...] = ()
    incremental: bool = False


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


def make_client_certificate(path: Path) -> str:
    """An app-registration certificate: writes key + certificate PEM to ``path``, returns the certificate PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd app")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(key_pem + cert_pem, encoding="utf-8")
    return cert_pem


class FakeGraph:
    """The fake tenant, its app registration, and the HTTPS server that answers for both."""

    def __init__(
        self,
        directory: Path,
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
        client_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        client_secret: str = "s3cr3t~value.that.must.never.leak",
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_certificate: str | None = None
        self.permissions = {"User.Read.All", "GroupMember.Read.All"}
        self.token_lifetime = 3599
        self.clock_offset = 0.0
        self.latency = 0.0
        self.limit_percentage: float | None = None
        self.members_per_page = 1000
        self.duplicate_changes = False
        self.replay_next = False
        self._reset: tuple[str, int] | None = None
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.token_requests = 0
        self.users: dict[str, dict[str, Any]] = {}
        self.deleted_users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self._journal: list[tuple[int, str, str, Any]] = []
        self._seq = 0
        self._tokens: dict[str, float] = {}
        self._delta_tokens: dict[str, dict[str, Any]] = {}
        self._rounds: dict[str, Round] = {}
        self._lock = threading.RLock()
        self.ca_file, cert, key = make_certificates(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-graph", daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> FakeGraph:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def now(self) -> float:
        return time.time() + self.clock_offset

    # -- the directory ----------------------------------------------------------------------------------------------

    def _record(self, kind: str, key: str, detail: Any = None) -> None:
        self._seq += 1
        self._journal.append((self._seq, kind, key, detail))

    def add_user(self, user_id: str | None = None, *, journal: bool = True, **properties: Any) -> str:
        with self._lock:
            user_id = user_id or str(uuid.uuid4())
            name = properties.pop("name", user_id[:8])
            self.users[user_id] = {
                "userPrincipalName": f"{name}@contoso.example",
                "mail": f"{name}@contoso.example",
                "displayName": name.replace(".", " ").title(),
                "accountEnabled": True,
                **properties,
            }
            if journal:
                self._record("user", user_id)
            return user_id

    def update_user(self, user_id: str, **properties: Any) -> None:
        with self._lock:
            self.users[user_id].update(properties)
            self._record("user", user_id)

    def set_manager(self, user_id: str, manager_id: str | None) -> None:
        """Assign (or with None, remove) a user's manager: a change of the ``manager`` relationship, tracked by
        delta when ``$select`` names ``manager`` ("Use delta query to track changes in Microsoft Graph data")."""
        with self._lock:
            user = self.users[user_id]
            former = user.get("manager")
            user["manager"] = manager_id
            user["_former_manager"] = former if manager_id is None else None
            self._record("user", user_id)

    def delete_user(self, user_id: str) -> None:
        """Soft delete: the user moves to deletedItems (restorable for 30 days) and leaves every group."""
        with self._lock:
            self.deleted_users[user_id] = self.users.pop(user_id)
            self._record("user", user_id)
            for group_id, group in self.groups.items():
                if group["members"].pop(user_id, None):
                    self._record("member", group_id, (user_id, USER, False))

    def restore_user(self, user_id: str) -> None:
        with self._lock:
            self.users[user_id] = self.deleted_users.pop(user_id)
            self._record("user", user_id)

    def purge_user(self, user_id: str) -> None:
        """Permanent deletion (from deletedItems, or directly): ``@removed`` reason ``deleted``."""
        with self._lock:
            if user_id in self.users:
                self.delete_user(user_id)
            self.deleted_users.pop(user_id, None)
            self._record("user", user_id)

    def add_group(
        self, name: str, members: Iterable[str] = (), group_id: str | None = None, *, journal: bool = True
    ) -> str:
        with self._lock:
            group_id = group_id or str(uuid.uuid4())
            self.groups[group_id] = {"displayName": name, "description": f"{name} group", "members": {}}
            if journal:
                self._record("group", group_id)
            for member in members:
                self.add_member(group_id, member, journal=journal)
            return group_id

    def rename_group(self, group_id: str, name: str) -> None:
        with self._lock:
            self.groups[group_id]["displayName"] = name
            self._record("group", group_id)

    def delete_group(self, group_id: str) -> None:
        with self._lock:
            del self.groups[group_id]
            self._record("group", group_id)

    def add_member(self, group_id: str, member_id: str, *, journal: bool = True) -> None:
        with self._lock:
            kind = GROUP if member_id in self.groups else USER
            self.groups[group_id]["members"][member_id] = kind
            if journal:
                self._record("member", group_id, (member_id, kind, True))

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self._lock:
            kind = self.groups[group_id]["members"].pop(member_id)
            self._record("member", group_id, (member_id, kind, False))

    # -- faults and knobs ---------------------------------------------------------------------------------------------

    def fail(
        self, path: str, kind: str = "status", *, status: int = 500, after: int = 0, times: int = 1, **extra: Any
    ) -> None:
        """Answer ``times`` requests whose path contains ``path`` wrongly, after letting ``after`` through."""
        with self._lock:
            self.faults.append(Fault(path=path, kind=kind, status=status, after=after, times=times, **extra))

    def throttle(self, times: int = 1, status: int = 429, retry_after: str | None = "1", path: str = "/v1.0/") -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"code": "TooManyRequests", "message": "Too many requests.", "innerError": {}}}
        if status == 503:
            body = {"error": {"code": "serviceNotAvailable", "message": "Service unavailable.", "innerError": {}}}
        self.fail(path, status=status, times=times, headers=headers, body=body)

    def expire_tokens(self) -> None:
        """Invalidate every issued access token, as if the server's clock passed their expiry."""
        with self._lock:
            self._tokens.clear()

    def reset_delta_tokens(self, mode: str = "410") -> None:
        """Make every deltaLink issued so far unusable: ``410`` answers 410 Gone with a Location (a synchronization
        reset), ``syncStateNotFound`` answers 400 as for an expired token."""
        with self._lock:
            self._reset = (mode, len(self._delta_tokens))

    def graph_requests(self, path: str = "/v1.0/") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith(path)]

    # -- HTTP ----------------------------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes | None]:
        """Answer one request: (status, headers, body); a None body means "cut the connection"."""
        url = urlsplit(target)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query, "headers": headers})
            fault = self._fault_for(path)
        if path.startswith("/v1.0/") and self.latency:
            time.sleep(self.latency)
        if fault is not None:
            return self._fault_answer(fault, headers, body)
        parts = path.strip("/").split("/")
        with self._lock:
            if method == "GET" and len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return self._openid(parts[0])
            if method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                return self._token(parts[0], body)
            if method == "GET" and path in ("/v1.0/users/delta", "/v1.0/groups/delta"):
                return self._delta(path.split("/")[2], query, headers)
        return _json(404, {"error": {"code": "Request_ResourceNotFound", "message": f"no route {path}"}})

    def _fault_for(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path in path:
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _fault_answer(
        self, fault: Fault, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes | None]:
        if fault.kind == "echo":
            quoted = f"Authorization: {headers.get('authorization')} body: {body.decode('utf-8', 'replace')}"
            if fault.path.startswith("/v1.0/"):
                return _json(fault.status, {"error": {"code": f"BadRequest {quoted}", "message": quoted}})
            return self._aad_error(fault.status, "invalid_request", 90014, f"Bad request as received: {quoted}")
        if fault.kind == "cut":
            return 200, {}, None
        if fault.kind == "invalid-json":
            return 200, {"Content-Type": "application/json"}, b'{"@odata.context": "x", "value": [{"id": "tru'
        if fault.kind == "no-links":
            return _json(200, {"@odata.context": "x", "value": []})
        body = fault.body or {"error": {"code": "generalException", "message": "An internal error occurred."}}
        status, headers, payload = _json(fault.status, body)
        headers.update(fault.headers)
        headers["request-id"] = str(uuid.uuid4())
        return status, headers, payload

    def _aad_error(self, status: int, error: str, code: int, text: str) -> tuple[int, dict[str, str], bytes]:
        return _json(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()}",
                "error_codes": [code],
                "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            },
        )

    def _openid(self, tenant: str) -> tuple[int, dict[str, str], bytes]:
        if tenant != self.tenant_id:
            return self._aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return _json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "tenant_region_scope": "EU",
            },
        )

    def _token(self, tenant: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.token_requests += 1
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if tenant != self.tenant_id:
            return self._aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )
        if "client_assertion" in form:
            if not self._assertion_valid(form["client_assertion"], tenant):
                return self._aad_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        elif form.get("client_secret") != self.client_secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                "value, not the client secret ID, for a secret added to app '" + self.client_id + "'.",
            )
        if form.get("scope") != f"{self.url}/.default":
            return self._aad_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid."
            )
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.now() + self.token_lifetime
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    def _assertion_valid(self, assertion: str, tenant: str) -> bool:
        import jwt
        from cryptography import x509

        if not self.client_certificate:
            return False
        key = x509.load_pem_x509_certificate(self.client_certificate.encode()).public_key()
        try:
            claims = jwt.decode(
                assertion,
                key,  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=f"{self.url}/{tenant}/oauth2/v2.0/token",
            )
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.client_id and claims.get("sub") == self.client_id

    def _delta(
        self, collection: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if self._tokens.get(token, 0) <= self.now():
            return _json(
                401,
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "Access token has expired or is not yet valid.",
                    }
                },
            )
        needed = "User.Read.All" if collection == "users" else "GroupMember.Read.All"
        if needed not in self.permissions:
            return _json(
                403,
                {
                    "error": {
                        "code": "Authorization_RequestDenied",
                        "message": "Insufficient privileges to complete the operation.",
                    }
                },
            )
        if "$skiptoken" in query:
            return self._page(collection, query["$skiptoken"], headers)
        if query.get("$deltatoken"):
            state = self._delta_tokens.get(query["$deltatoken"])
            if state is None or state["collection"] != collection:
                return _json(
                    400, {"error": {"code": "syncStateNotFound", "message": "The sync state generation is not found."}}
                )
            reset = self._reset is not None and state["serial"] < self._reset[1]
            if reset and self._reset is not None and self._reset[0] == "410":
                status, answer_headers, payload = _json(
                    410,
                    {"error": {"code": "resyncRequired", "message": "Resync required. Replace any local cached copy."}},
                )
                answer_headers["Location"] = f"{self.url}/v1.0/{collection}/delta?$deltatoken="
                return status, answer_headers, payload
            if reset:
                return _json(
                    400,
                    {
                        "error": {
                            "code": "syncStateNotFound",
                            "message": "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
                        }
                    },
                )
            since = state["since"] if self.replay_next else state["watermark"]
            return self._start_round(collection, state["select"], state["ids"], since, headers)
        select = tuple(a for a in query.get("$select", "").split(",") if a)
        ids = tuple(re.findall(r"id eq '([^']+)'", query.get("$filter", "")))
        return self._start_round(collection, select, ids, None, headers)

    def _start_round(
        self, collection: str, select: tuple[str, ...], ids: tuple[str, ...], since: int | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        entries = self._entries(collection, ids, since)
        if since is not None and self.duplicate_changes:
            entries = entries + entries
        size = _page_size(headers)
        pages: list[list[tuple[Any, ...]]] = [[]]
        room_members = self.members_per_page
        for entry in entries:
            if len(pages[-1]) >= size:
                pages.append([])
                room_members = self.members_per_page
            if entry[0] != "group" or entry[2] is None:
                pages[-1].append(entry)
                continue
            members = entry[2]
            while True:
                part, members = members[:room_members], members[room_members:]
                pages[-1].append(("group", entry[1], part))
                room_members -= len(part)
                if not members:
                    break
                pages.append([])
                room_members = self.members_per_page
        round_id = secrets.token_urlsafe(12)
        self._rounds[round_id] = Round(
            collection, select, pages, self._seq, since if since is not None else 0, ids, since is not None
        )
        return self._page(collection, _encode(f"{round_id}:0"), headers)

    def _entries(self, collection: str, ids: tuple[str, ...], since: int | None) -> list[tuple[Any, ...]]:
        """What a round reports: everything that exists (full round), or the net changes after ``since``."""
        if collection == "users":
            if since is None:
                return [("user", key) for key in self.users]
            changed = list(dict.fromkeys(key for seq, kind, key, _ in self._journal if seq > since and kind == "user"))
            return [("user", key) for key in changed]
        if since is None:
            keys = [k for k in self.groups if not ids or k in ids]
            return [
                ("group", key, [(m, kind, True) for m, kind in self.groups[key]["members"].items()]) for key in keys
            ]
        net: dict[str, dict[str, tuple[str, str, bool]]] = {}
        for seq, kind, key, detail in self._journal:
            if seq <= since or kind not in ("group", "member") or (ids and key not in ids):
                continue
            members = net.setdefault(key, {})
            if kind == "member":
                members[detail[0]] = detail
        return [("group", key, list(members.values())) for key, members in net.items()]

    def _page(self, collection: str, skiptoken: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        try:
            round_id, index_text = _decode(skiptoken).split(":")
            current = self._rounds[round_id]
            index = int(index_text)
            entries = current.pages[index]
        except (ValueError, KeyError, IndexError):
            return _json(400, {"error": {"code": "BadRequest", "message": "Invalid $skiptoken."}})
        if current.collection != collection:
            return _json(400, {"error": {"code": "BadRequest", "message": "Invalid $skiptoken."}})
        value = [self._render(entry, current.select, current.incremental) for entry in entries]
        body: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#{collection}", "value": value}
        if index + 1 < len(current.pages):
            body["@odata.nextLink"] = (
                f"{self.url}/v1.0/{collection}/delta?$skiptoken={_encode(f'{round_id}:{index + 1}')}"
            )
        else:
            delta_token = secrets.token_urlsafe(24)
            self._delta_tokens[delta_token] = {
                "collection": collection,
                "select": current.select,
                "ids": current.ids,
                "serial": len(self._delta_tokens),
                "watermark": current.watermark,
                "since": current.since,
            }
            body["@odata.deltaLink"] = f"{self.url}/v1.0/{collection}/delta?$deltatoken={delta_token}"
        status, answer_headers, payload = _json(200, body)
        if self.limit_percentage is not None:
            answer_headers["x-ms-throttle-limit-percentage"] = f"{self.limit_percentage:.1f}"
        answer_headers["x-ms-resource-unit"] = "1"
        return status, answer_headers, payload

    def _render(self, entry: tuple[Any, ...], select: tuple[str, ...], incremental: bool) -> dict[str, Any]:
        key = entry[1]
        if entry[0] == "user":
            user = self.users.get(key)
            if user is None:
                reason = "changed" if key in self.deleted_users else "deleted"
                return {"id": key, "@removed": {"reason": reason}}
            item = {"id": key}
            item.update({a: user[a] for a in select if a in user and user[a] is not None and a != "manager"})
            if "manager" in select and user.get("manager"):
                item["manager@delta"] = [{"@odata.type": USER, "id": user["manager"]}]
            elif "manager" in select and user.get("_former_manager") and incremental:
                item["manager@delta"] = [
                    {"@odata.type": USER, "id": user["_former_manager"], "@removed": {"reason": "deleted"}}
                ]
            return item
        group = self.groups.get(key)
        if group is None:
            return {"id": key, "@removed": {"reason": "deleted"}}
        item = {"id": key}
        item.update({a: group[a] for a in select if a in group and a != "members" and group[a] is not None})
        members = entry[2]
        if "members" in select and members:
            item["members@delta"] = [
                {"@odata.type": kind, "id": member}
                if present
                else {"@odata.type": kind, "id": member, "@removed": {"reason": "deleted"}}
                for member, kind, present in members
            ]
        return item


def _page_size(headers: dict[str, str]) -> int:
    match = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
    return min(MAX_PAGE_SIZE, int(match.group(1))) if match else DEFAULT_PAGE_SIZE


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; odata.metadata=minimal"}, json.dumps(body).encode()


def _handler(graph: FakeGraph) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer_headers, payload = graph.handle(self.command, self.path, headers, body)
            if payload is None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "4096")
                self.end_headers()
                self.wfile.write(b'{"value": [')
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _answer
        do_POST = _answer

    return Handler
