"""Property test: generated hostile SCIM requests never get a server error, always get RFC 7644 §3.12 JSON when
refused, and a refused request changes nothing.

In-process, through the Flask test client of the real SCIM app (``scim.create_app``: the same blueprint, service,
storage and reconciler ``syncd serve`` mounts; no part replaced, the WSGI server aside) on SQLite and on the real
PostgreSQL. Requests mix methods SCIM has and does not have, endpoints real and invented, query parameters
(filters long, deep and malformed; indexes beyond 64 bits; unicode; NUL), bodies (arbitrary JSON, SCIM shapes with
hostile values, nesting thousands deep, bytes that are not JSON, bodies over ``server.max_body_bytes``) and
credentials (none, wrong scope, another org). The assertion on every one: the status is below 500, or 503 with
``Retry-After``, or 501 for an operation syncd does not offer (RFC 7644 §3.12); an error is ``application/scim+json`` with the Error schema and a string ``status``; after an
error, the org's identities, groups, memberships, members, ledger and outbox are what they were before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.store.models import DirectoryGroup, GroupMember, Identity, LedgerEntry, Member, OutboxEvent

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
MAX_BODY = 16_384
EXAMPLES = 150

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# SCIM's methods most of the time, so that requests reach the filters, storage and reconciler behind routing.
METHODS = st.sampled_from(
    ["GET"] * 6 + ["POST"] * 6 + ["PATCH"] * 6 + ["PUT"] * 3 + ["DELETE"] * 2 + ["PROPFIND", "TRACE", "HEAD", "BREW"]
)
ENDPOINTS = {
    "GET": ["/Users", "/Groups", "/Users/{user}", "/Groups/{group}", "/Users/{other}", "/Schemas", "/Me", "/"],
    "POST": ["/Users", "/Groups", "/Users/.search", "/Groups/.search", "/.search", "/Bulk"],
    "PATCH": ["/Users/{user}", "/Groups/{group}", "/Users/{other}", "/Users"],
    "PUT": ["/Users/{user}", "/Groups/{group}", "/Users/{user}/extra"],
    "DELETE": ["/Users/{other}", "/Groups/{group}", "/Users/nobody"],
}
RANDOM_PATH = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="?#"), max_size=24)


@st.composite
def requests_lines(draw: Any) -> tuple[str, str]:
    """A method and a path: mostly an endpoint that method serves, sometimes one it does not, or noise."""
    method = draw(METHODS)
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return method, "/" + draw(RANDOM_PATH)
    if roll == 1 or method not in ENDPOINTS:
        return method, draw(st.sampled_from(sorted({p for paths in ENDPOINTS.values() for p in paths})))
    return method, draw(st.sampled_from(ENDPOINTS[method]))


ATTRIBUTES = [
    "userName",
    "displayName",
    "emails.value",
    'emails[type eq "work"].value',
    "meta.created",
    "meta.lastModified",
    "members.value",
    "groups",
    "name.givenName",
    "active",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "x",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "foo"]
OPERANDS = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(["true", "null", "0", "-1", "1e999", '"2026-01-01T00:00:00Z"', "2026", '"x"', '"\\u0000"']),
    st.integers(-(2**70), 2**70).map(str),
)


@st.composite
def filters(draw: Any) -> str:
    """Filters small and huge: comparisons joined by and/or, wrapped in brackets and not, sometimes thousands."""
    shape = draw(st.sampled_from(["plain", "long", "deep", "text"]))
    if shape == "text":
        return draw(st.text(max_size=60))
    if shape == "deep":
        depth = draw(st.integers(0, 1500))
        return "(" * depth + 'userName eq "a"' + ")" * draw(st.integers(0, depth))
    count = draw(st.integers(1, 6 if shape == "plain" else 400))
    terms = []
    for _ in range(count):
        attribute = draw(st.sampled_from(ATTRIBUTES))
        operator = draw(st.sampled_from(OPERATORS))
        term = f"{attribute} {operator}" if operator == "pr" else f"{attribute} {operator} {draw(OPERANDS)}"
        terms.append(draw(st.sampled_from(["{}", "not ({})", "({})"])).format(term))
    return f" {draw(st.sampled_from(['and', 'or', 'AND']))} ".join(terms)


QUERY_VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=30),
    st.sampled_from(["9223372036854775809", "-9223372036854775809", "0", "1e3", "", "\x00", "userName"]),
)
QUERIES = st.dictionaries(
    st.sampled_from(["startIndex", "count", "attributes", "excludedAttributes", "sortBy", "sortOrder", "cursor"]),
    QUERY_VALUES,
    max_size=3,
) | st.builds(lambda f, rest: {"filter": f, **rest}, filters(), st.dictionaries(st.just("count"), QUERY_VALUES))

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
LONG_TEXT = st.sampled_from([255, 256, 300, 512, 513, 3000]).map(lambda n: "é" * n) | st.text(max_size=30)


@st.composite
def bodies(draw: Any) -> bytes | None:
    kind = draw(st.sampled_from(["none", "json", "user", "group", "patch", "search", "deep", "bytes", "huge"]))
    if kind == "none":
        return None
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "user":
        user = {"schemas": [USER], "userName": draw(LONG_TEXT), "externalId": draw(LONG_TEXT | st.none())}
        user["emails"] = [{"value": draw(LONG_TEXT), "primary": True}]
        user[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        return json.dumps(user).encode()
    if kind == "group":
        members = draw(st.lists(st.text(max_size=20), max_size=3))
        group = {"schemas": [GROUP], "displayName": draw(LONG_TEXT), "members": [{"value": m} for m in members]}
        return json.dumps(group).encode()
    if kind == "patch":
        operation = {
            "op": draw(st.sampled_from(["add", "replace", "remove", "Add", "copy"])),
            "path": draw(filters().map(lambda f: f"members[{f}]") | st.sampled_from(ATTRIBUTES) | st.text(max_size=20)),
            "value": draw(JSON_VALUES),
        }
        return json.dumps({"schemas": [PATCH], "Operations": [operation]}).encode()
    if kind == "search":
        search = {"schemas": [SEARCH], "filter": draw(filters())}
        search[draw(st.sampled_from(["startIndex", "count"]))] = draw(st.integers(-(2**70), 2**70))
        return json.dumps(search).encode()
    if kind == "deep":
        depth = draw(st.integers(200, 3000))
        inner = "[" * depth + "]" * depth if draw(st.booleans()) else '{"a":' * depth + "1" + "}" * depth
        return f'{{"schemas":["{PATCH}"],"Operations":[{{"op":"add","value":{inner}}}]}}'.encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    return b'{"userName": "' + b"x" * (MAX_BODY + draw(st.integers(1, 5000))) + b'"}'


def store_state(org_id: int) -> tuple[Any, ...]:
    """Everything a SCIM write may change for the org, in a comparable form."""
    return (
        sorted(
            Identity.select(Identity.key, Identity.resource, Identity.version).where(Identity.org == org_id).tuples()
        ),
        sorted(
            DirectoryGroup.select(DirectoryGroup.key, DirectoryGroup.display_name, DirectoryGroup.version)
            .where(DirectoryGroup.org == org_id)
            .tuples()
        ),
        sorted(GroupMember.select(GroupMember.group, GroupMember.member_key).where(GroupMember.org == org_id).tuples()),
        sorted(Member.select(Member.match_key, Member.status, Member.role).where(Member.org == org_id).tuples()),
        LedgerEntry.select().where(LedgerEntry.org == org_id).count(),
        OutboxEvent.select().count(),
    )


@pytest.fixture
def world(store: Any) -> dict[str, Any]:
    """Org acme with a user and a group (and org globex with a user), served by the real app, reconciler included."""
    from scim import create_app
    from syncd.admin import tokens
    from syncd.sync import orgs
    from tests.scim.conftest import Client, make_config

    acme = orgs.create("acme", "Acme", ["acme.com"])
    globex = orgs.create("globex", "Globex", ["globex.com"])
    _, scim_token = tokens.create(acme, "scim")
    _, admin_token = tokens.create(acme, "admin")
    _, globex_token = tokens.create(globex, "scim")
    app = create_app(make_config(max_body_bytes=MAX_BODY))
    client = Client(app.test_client(), scim_token)
    user = client.create_user("alice@acme.com", emails=[{"value": "alice@acme.com", "primary": True}])
    group = client.create_group("Engineering", members=[user["id"]])
    other = Client(app.test_client(), globex_token).create_user("bob@globex.com")
    return {
        "org": acme.id,
        "flask": app.test_client(),
        "ids": {"user": user["id"], "group": group["id"], "other": other["id"]},
        "tokens": [f"Bearer {scim_token}", f"Bearer {admin_token}", "Bearer syncd_not-a-token", "", "Basic YTpi"],
    }


@SETTINGS
@given(
    line=requests_lines(),
    query=QUERIES,
    body=bodies(),
    content_type=st.sampled_from(["application/scim+json", "application/json", "text/plain", ""]),
    credential=st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4]),
)
def test_hostile_requests_never_answer_a_server_error_and_a_refused_one_changes_nothing(
    world, line, query, body, content_type, credential
):
    method, path = line
    before = store_state(world["org"])
    headers = {"Authorization": world["tokens"][credential]}
    if content_type and body is not None:
        headers["Content-Type"] = content_type
    for name, key in world["ids"].items():
        path = path.replace("{" + name + "}", key)
    answer = world["flask"].open("/scim/v2" + path, method=method, data=body, headers=headers, query_string=query)
    status = answer.status_code
    event(f"status {status}")
    # RFC 7644 §3.12 names 501 for "the request operation" a provider does not support (syncd: /Me, password
    # change); it is a refusal with a SCIM body, not a server error.
    acceptable = status < 500 or status == 501 or (status == 503 and answer.headers.get("Retry-After"))
    assert acceptable, answer.data[:300]
    if status < 400:
        return
    if method != "HEAD":
        assert answer.headers["Content-Type"].startswith("application/scim+json"), answer.data[:200]
        error = json.loads(answer.data)
        assert error["schemas"] == [ERROR] and error["status"] == str(status), error
    assert store_state(world["org"]) == before, f"{method} {path} answered {status} but changed the store"
