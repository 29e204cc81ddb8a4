"""The hot routes (scim/web.py ``HotRoutes``: SCIM answered from the WSGI environ, without Flask's request machinery)
answer byte for byte what the Flask route answers the same request: status line, every header in order, body. Each
request is sent to both through WSGI, under hosts, ports, schemes and script names that change how werkzeug builds
URLs, and for answers of every kind (found, looked up, discovery, refused, too large, not found)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pytest

from scim.web import HotRoutes
from tests.scim.conftest import ScimWorld

USER = "urn:ietf:params:scim:schemas:core:2.0:User"

HOSTS = [
    {"HTTP_HOST": "127.0.0.1:8080"},
    {"HTTP_HOST": "scim.example.com:80"},
    {"HTTP_HOST": "Scim.Example.COM", "wsgi.url_scheme": "https"},
    {"HTTP_HOST": "scim.example.com:443", "wsgi.url_scheme": "https"},
    {"HTTP_HOST": "bücher.example:8443", "wsgi.url_scheme": "https"},
    {"HTTP_HOST": "b\xc3\xbccher.example", "wsgi.url_scheme": "https"},
    {"SCRIPT_NAME": "/idp gateway"},
    {"SCRIPT_NAME": "/b\xc3\xbccher"},
    {},
]


def environ(method: str, path: str, *, query: str = "", token: str | None = None, body: bytes = b"", **extra: str):
    made: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if token is not None:
        made["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if body:
        made["CONTENT_TYPE"] = "application/scim+json"
        made["CONTENT_LENGTH"] = str(len(body))
    made.update(extra)
    return made


def call(app: Any, made: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.extend([status, headers])

    body: Iterable[bytes] = app(made, start_response)
    return started[0], list(started[1]), b"".join(body)


def both(scim: ScimWorld, method: str, path: str, **options: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    """The answers of the hot route and of Flask's route to one request; they must be equal, and come from the hot
    route only when it takes the request."""
    hot = scim.app.wsgi_app
    assert isinstance(hot, HotRoutes)
    host = options.pop("host", {})
    first, second = environ(method, path, **options, **host), environ(method, path, **options, **host)
    fast, flask = call(hot, first), call(hot.flask, second)
    assert fast == flask
    return fast


@pytest.mark.parametrize("host", HOSTS, ids=lambda host: ascii(list(host.values())))
def test_reads_answer_what_the_flask_route_answers(scim: ScimWorld, host: dict[str, str]) -> None:
    user = scim.a.create_user("ada@acme.com", externalId="ext-ada", emails=[{"value": "ada@acme.com"}])
    scim.a.create_group("Engineering", [user["id"]])
    token = scim.tokens["a"]

    status, headers, body = both(scim, "GET", f"/scim/v2/Users/{user['id']}", token=token, host=host)
    assert status == "200 OK" and json.loads(body)["userName"] == "ada@acme.com"
    assert ("Content-Type", "application/scim+json") in headers
    lookup = both(
        scim, "GET", "/scim/v2/Users", query="filter=userName+eq+%22ADA%40acme.com%22", token=token, host=host
    )
    assert json.loads(lookup[2])["totalResults"] == 1
    both(scim, "GET", "/scim/v2/Users", query='filter=externalId eq "ext-ada"&count=3', token=token, host=host)
    both(scim, "GET", "/scim/v2/Users", query="startIndex=1&count=1", token=token, host=host)
    both(scim, "GET", "/scim/v2/Users", query="attributes=userName", token=token, host=host)
    both(scim, "GET", "/scim/v2/Groups", token=token, host=host)
    for endpoint in ("ServiceProviderConfig", "Schemas", "ResourceTypes"):
        for _ in range(2):  # answered, then from the discovery cache
            assert both(scim, "GET", f"/scim/v2/{endpoint}", token=token, host=host)[0] == "200 OK"
    assert both(scim, "GET", "/scim/v2/ServiceProviderConfig", host=host)[0] == "200 OK"


def test_refusals_answer_what_the_flask_route_answers(scim: ScimWorld) -> None:
    user = scim.a.create_user("bob@acme.com")
    token = scim.tokens["a"]
    assert both(scim, "GET", f"/scim/v2/Users/{user['id']}")[0] == "401 UNAUTHORIZED"
    assert both(scim, "GET", f"/scim/v2/Users/{user['id']}", token="syncd_not-a-token")[0] == "401 UNAUTHORIZED"
    assert both(scim, "GET", f"/scim/v2/Users/{user['id']}", token=scim.tokens["admin_a"])[0] == "403 FORBIDDEN"
    assert both(scim, "GET", f"/scim/v2/Users/{user['id']}", token=scim.tokens["b"])[0] == "404 NOT FOUND"
    assert both(scim, "GET", "/scim/v2/Users/no-such-id", token=token)[0] == "404 NOT FOUND"
    assert both(scim, "GET", "/scim/v2/Users", query="filter=userName zz 1", token=token)[0] == "400 BAD REQUEST"
    assert both(scim, "GET", "/scim/v2/Users", query="filter=a%00b", token=token)[0] == "400 BAD REQUEST"
    assert both(scim, "GET", "/scim/v2/Schemas", token="syncd_not-a-token")[0] == "401 UNAUTHORIZED"
    duplicate = json.dumps({"schemas": [USER], "userName": "bob@acme.com"}).encode()
    assert both(scim, "POST", "/scim/v2/Users", token=token, body=duplicate)[0] == "409 CONFLICT"
    too_big = json.dumps({"schemas": [USER], "userName": "x" * 2_000_000}).encode()
    assert both(scim, "POST", "/scim/v2/Users", token=token, body=too_big)[0] == "413 REQUEST ENTITY TOO LARGE"
    assert both(scim, "PUT", "/scim/v2/Users/no-such-id", token=token, body=duplicate)[0] == "404 NOT FOUND"
    assert both(scim, "DELETE", "/scim/v2/Users/no-such-id", token=token)[0] == "404 NOT FOUND"
    etag = scim.a.get(f"/Users/{user['id']}").headers["ETag"]
    matched = {"HTTP_IF_NONE_MATCH": etag}
    assert both(scim, "GET", f"/scim/v2/Users/{user['id']}", token=token, **matched)[0].startswith("304")


def test_writes_through_the_hot_routes_answer_as_the_flask_route_does(scim: ScimWorld) -> None:
    """A write is not repeatable, so each is made once through each route on its own user, and the answers are
    compared with the user's id, name and times set aside."""
    token = scim.tokens["a"]
    hot = scim.app.wsgi_app
    assert isinstance(hot, HotRoutes)

    def shape(answer: tuple[str, list[tuple[str, str]], bytes], user_id: str, name: str) -> tuple[Any, ...]:
        status, headers, body = answer
        text = body.decode().replace(user_id, "ID").replace(name, "NAME")
        document = json.loads(text) if text else None
        if document and "meta" in document:
            document["meta"] = {key: value for key, value in document["meta"].items() if key == "resourceType"}
        sized = {"Content-Length": "N", "ETag": "V"}  # lengths and versions differ with the name; not whether sent
        kept = [(k, sized.get(k, v.replace(user_id, "ID"))) for k, v in headers]
        return status, kept, document

    def writes(route: Any, name: str) -> list[tuple[Any, ...]]:
        created = call(route, environ("POST", "/scim/v2/Users", token=token, body=user(name)))
        user_id = json.loads(created[2])["id"]
        replaced = call(route, environ("PUT", f"/scim/v2/Users/{user_id}", token=token, body=user(name, False)))
        deleted = call(route, environ("DELETE", f"/scim/v2/Users/{user_id}", token=token))
        return [shape(answer, user_id, name) for answer in (created, replaced, deleted)]

    through_hot = writes(hot, "carol@acme.com")
    assert through_hot == writes(hot.flask, "dave@acme.com")
    assert [answer[0] for answer in through_hot] == ["201 CREATED", "200 OK", "204 NO CONTENT"]


def user(name: str, active: bool = True) -> bytes:
    return json.dumps({"schemas": [USER], "userName": name, "active": active}).encode()


def test_requests_the_hot_routes_do_not_take_go_to_flask(scim: ScimWorld) -> None:
    """Methods, paths and bodies outside the hot routes reach Flask's routing: its 405 and redirect, in SCIM form."""
    hot = scim.app.wsgi_app
    assert isinstance(hot, HotRoutes)
    not_allowed = call(hot, environ("PROPFIND", "/scim/v2/Users", token=scim.tokens["a"]))
    assert not_allowed[0] == "405 METHOD NOT ALLOWED" and ("Allow", "GET, POST, PUT, PATCH, DELETE") in not_allowed[1]
    assert call(hot, environ("GET", "/scim/v2//Users", token=scim.tokens["a"]))[0].startswith("308")
