"""Each hostile SCIM request that once answered 500 gets its RFC 7644 §3.12 answer instead (a 4xx, or a 503 with
``Retry-After``), on SQLite and PostgreSQL, and changes nothing (limits in scim.limits and syncd.store.limits)."""

from __future__ import annotations

import pytest

from scim.limits import MAX_FILTER_TERMS, MAX_START_INDEX
from syncd.store.limits import MAX_IDENTIFIER_CHARS
from tests.scim.conftest import SCIM_JSON

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BEYOND_64_BITS = "9223372036854775809"
LONGEST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 56 + ".test"


def assert_error(answer, status: int, scim_type: str | None = None) -> None:
    assert answer.status == status, answer.body
    assert answer.body["schemas"] == [ERROR] and answer.body["status"] == str(status)
    if scim_type is not None:
        assert answer.body["scimType"] == scim_type


def test_a_filter_at_the_term_limit_is_served_flat_without_a_parser_overflow(scim):
    """SQLite's parser overflowed from 87 nested ``or`` terms; the compiled SQL is flat now."""
    alice = scim.a.create_user("alice", title="Engineer")
    terms = [f'userName eq "u{i}"' for i in range(MAX_FILTER_TERMS)]
    expression = " or ".join([*terms, 'userName eq "alice"'])
    answer = scim.a.get("/Users", query={"filter": expression})
    assert answer.status == 200, answer.body
    assert [r["id"] for r in answer.body["Resources"]] == [alice["id"]]
    mixed = " or ".join(f'(emails.type eq "w{i}" and not (title co "x{i}"))' for i in range(MAX_FILTER_TERMS // 3))
    assert scim.a.get("/Users", query={"filter": mixed}).status == 200


@pytest.mark.parametrize("operator", ["or", "and"])
def test_a_filter_beyond_the_term_limit_is_an_invalid_filter(scim, operator):
    expression = f" {operator} ".join(f'userName eq "u{i}"' for i in range(1000))
    answer = scim.a.get("/Users", query={"filter": expression})
    assert_error(answer, 400, "invalidFilter")
    assert f"at most {MAX_FILTER_TERMS}" in answer.body["detail"]
    searched = scim.a.post("/Users/.search", {"schemas": [SEARCH], "filter": expression})
    assert_error(searched, 400, "invalidFilter")


def test_a_filter_nested_beyond_the_depth_limit_is_an_invalid_filter(scim):
    answer = scim.a.get("/Users", query={"filter": "(" * 500 + 'userName eq "a"' + ")" * 500})
    assert_error(answer, 400, "invalidFilter")


def test_a_start_index_beyond_64_bits_reads_as_the_last_index_in_the_query_and_in_a_search(scim):
    scim.a.create_user("alice")
    answer = scim.a.get("/Users", query={"startIndex": BEYOND_64_BITS})
    assert answer.status == 200, answer.body
    assert answer.body["totalResults"] == 1 and not answer.body.get("Resources")
    assert answer.body["startIndex"] == MAX_START_INDEX
    searched = scim.a.post("/Users/.search", {"schemas": [SEARCH], "startIndex": int(BEYOND_64_BITS)})
    assert searched.status == 200 and searched.body["totalResults"] == 1
    counted = scim.a.get("/Groups", query={"count": BEYOND_64_BITS, "startIndex": BEYOND_64_BITS})
    assert counted.status == 200


@pytest.mark.parametrize("expression", ['meta.lastModified sw "x"', 'meta.created co "2026"', "meta.created ew 0"])
def test_a_string_operator_on_a_date_is_an_invalid_filter(scim, expression):
    for endpoint in ("/Users", "/Groups"):
        assert_error(scim.a.get(endpoint, query={"filter": expression}), 400, "invalidFilter")


def test_a_patch_body_nested_a_thousand_deep_is_refused_like_the_same_put(scim):
    alice = scim.a.create_user("alice")
    nested = '{"a":' * 1000 + "1" + "}" * 1000
    raw = f'{{"schemas":["{PATCH}"],"Operations":[{{"op":"add","value":{nested}}}]}}'.encode()
    patched = scim.a.request("PATCH", f"/Users/{alice['id']}", raw=raw)
    assert_error(patched, 400, "invalidSyntax")
    put = scim.a.request("PUT", f"/Users/{alice['id']}", raw=f'{{"schemas":["{USER}"],"x":{nested}}}'.encode())
    assert_error(put, 400, "invalidSyntax")
    assert scim.a.get(f"/Users/{alice['id']}").body["meta"]["version"] == alice["meta"]["version"]


def test_a_patch_path_filter_beyond_the_term_limit_is_an_invalid_filter(scim):
    group = scim.a.create_group("Team")
    selection = " or ".join(f'value eq "m{i}"' for i in range(500))
    answer = scim.a.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": f"members[{selection}]"}])
    assert_error(answer, 400, "invalidFilter")


def test_values_as_long_as_the_rfcs_allow_are_stored_alike_on_both_databases(scim):
    group = scim.a.create_group("g" * 256)
    assert scim.a.get(f"/Groups/{group['id']}").body["displayName"] == "g" * 256
    scim.a.create_user("u" * 300)
    user = scim.a.create_user("longest", emails=[{"value": LONGEST_EMAIL, "primary": True}])
    assert scim.a.get(f"/Users/{user['id']}").body["emails"][0]["value"] == LONGEST_EMAIL
    scim.a.create_user("titled", title="t" * 5000, displayName="d" * 5000)


@pytest.mark.parametrize(
    ("endpoint", "body", "attribute"),
    [
        ("/Users", {"schemas": [USER], "userName": "u" * (MAX_IDENTIFIER_CHARS + 1)}, "userName"),
        ("/Users", {"schemas": [USER], "userName": "x", "externalId": "e" * 600}, "externalId"),
        ("/Groups", {"schemas": [GROUP], "displayName": "g" * (MAX_IDENTIFIER_CHARS + 1)}, "displayName"),
    ],
)
def test_an_identifier_beyond_the_limit_is_refused_naming_the_attribute(scim, endpoint, body, attribute):
    answer = scim.a.post(endpoint, body)
    assert_error(answer, 400, "invalidValue")
    assert answer.body["detail"].startswith(f"{attribute} is ")
    assert scim.a.get(endpoint).body["totalResults"] == 0


def test_an_over_size_body_is_a_scim_413(scim):
    from scim import create_app
    from tests.scim.conftest import Client, make_config

    small = Client(create_app(make_config(max_body_bytes=1024)).test_client(), scim.tokens["a"])
    answer = small.request("POST", "/Users", raw=b'{"userName": "' + b"x" * 5000 + b'"}')
    assert_error(answer, 413)
    assert answer.headers["Content-Type"] == SCIM_JSON


@pytest.mark.parametrize("method", ["PROPFIND", "TRACE", "MKCOL", "BREW"])
def test_an_unknown_method_under_scim_is_a_scim_405(scim, method):
    answer = scim.a.request(method, "/Users")
    assert_error(answer, 405)
    assert answer.headers["Content-Type"] == SCIM_JSON and "PATCH" in answer.headers["Allow"]


def test_a_write_that_cannot_get_the_sqlite_lock_in_time_is_a_503_with_retry_after(sqlite_store, sqlite_url):
    """Another connection holds SQLite's write lock, as a big sync does. The app's busy timeout is cut from 10 s
    to 50 ms on its connection so the test need not wait; what happens when it runs out is the behaviour checked."""
    import sqlite3

    from scim import create_app
    from syncd.admin import tokens
    from syncd.sync import orgs
    from tests.scim.conftest import Client, make_config

    org = orgs.create("acme", "Acme", ["acme.com"])
    _, token = tokens.create(org, "scim")
    client = Client(create_app(make_config()).test_client(), token)
    sqlite_store.execute_sql("PRAGMA busy_timeout = 50")
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answer = client.post("/Users", {"schemas": [USER], "userName": "blocked"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_error(answer, 503)
    assert answer.headers["Retry-After"].isdigit()
    assert client.get("/Users").body["totalResults"] == 0
    assert client.post("/Users", {"schemas": [USER], "userName": "blocked"}).status == 201


def test_a_write_that_cannot_get_the_postgresql_org_lock_in_time_is_a_503_with_retry_after(postgres_url):
    """Another connection holds the org's row lock, as a sync applying to the org does. The app's connection gets a
    ``lock_timeout`` of 50 ms so the test need not wait for the sync; what happens when it runs out is checked."""
    import psycopg2

    from scim import create_app
    from syncd.admin import tokens
    from syncd.store import open_database, upgrade
    from syncd.sync import orgs
    from tests.conftest import _empty_tables
    from tests.scim.conftest import Client, make_config

    db = open_database(postgres_url)
    upgrade()
    _empty_tables(db)
    try:
        org = orgs.create("acme", "Acme", ["acme.com"])
        _, token = tokens.create(org, "scim")
        client = Client(create_app(make_config()).test_client(), token)
        blocked = {"schemas": [USER], "userName": "blocked", "emails": [{"value": "blocked@acme.com", "primary": True}]}
        db.execute_sql("SET lock_timeout = '50ms'")
        holder = psycopg2.connect(postgres_url)
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM organization WHERE id = %s FOR NO KEY UPDATE", (org.id,))
            answer = client.post("/Users", blocked)
        holder.rollback()
        holder.close()
        assert_error(answer, 503)
        assert answer.headers["Retry-After"].isdigit()
        assert client.get("/Users").body["totalResults"] == 0
        assert client.post("/Users", blocked).status == 201
    finally:
        db.execute_sql("SET lock_timeout = 0")
        db.close()
