"""Reads answered from the stored representation (scim/representation.py) answer byte for byte what the model path
answers (``stored_reads=False``: every read validated and dumped through scim2-models), for users of every attribute
shape and after every kind of write that changes what a read shows."""

from __future__ import annotations

import json
import re
from typing import Any

import flask
import pytest

from scim import create_app
from tests.scim.conftest import BASE, ScimWorld, make_config

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def model_app(scim: ScimWorld) -> flask.Flask:
    return create_app(make_config(), stored_reads=False)


def answers(app: flask.Flask, token: str, path: str, query: dict[str, str] | None = None) -> tuple[Any, ...]:
    answer = app.test_client().get(BASE + path, headers={"Authorization": f"Bearer {token}"}, query_string=query)
    return answer.status_code, answer.data, sorted(answer.headers.items())


def same(scim: ScimWorld, model_app: flask.Flask, path: str, query: dict[str, str] | None = None) -> bytes:
    stored = answers(scim.app, scim.tokens["a"], path, query)
    modelled = answers(model_app, scim.tokens["a"], path, query)
    assert stored == modelled
    return stored[1]


def reads(scim: ScimWorld, model_app: flask.Flask, user: dict[str, Any]) -> None:
    """GET by id, userName lookups (any case, with count and startIndex=1) and externalId lookups all agree."""
    same(scim, model_app, f"/Users/{user['id']}")
    for name in (user["userName"], user["userName"].upper()):
        same(scim, model_app, "/Users", {"filter": f'userName eq "{name}"'})
    same(scim, model_app, "/Users", {"filter": f'USERNAME EQ "{user["userName"]}"', "startIndex": "1", "count": "5"})
    if user.get("externalId"):
        same(scim, model_app, "/Users", {"filter": f'externalId eq "{user["externalId"]}"'})


def full_user(name: str, manager: dict[str, Any] | str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [USER, ENTERPRISE],
        "userName": name,
        "externalId": f"ext-{name}",
        "displayName": f"{name} Display",
        "nickName": "nick",
        "title": "Engineer",
        "preferredLanguage": "en",
        "name": {"givenName": "Given", "familyName": "Family", "formatted": "Given Family", "middleName": "M"},
        "emails": [
            {"value": f"{name}@acme.com", "type": "work", "primary": True},
            {"value": f"{name}@home.example.com", "type": "home"},
        ],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
        "addresses": [{"streetAddress": "1 Main St", "locality": "Town", "country": "US", "type": "work"}],
        "roles": [{"value": "admin"}],
        "x509Certificates": [{"value": "TUlJQw=="}],
        "active": True,
        "password": "never-stored",
        ENTERPRISE: {"employeeNumber": "42", "department": "R&D", "costCenter": "C1"},
    }
    if manager is not None:
        body[ENTERPRISE]["manager"] = manager
    return body


def test_users_of_every_shape_read_alike(scim: ScimWorld, model_app: flask.Flask) -> None:
    boss = scim.a.post("/Users", {"schemas": [USER], "userName": "boss"}).body
    shapes = [
        {"schemas": [USER], "userName": "minimal"},
        {"schemas": [USER], "userName": "nameonly", "name": {"givenName": "Ann", "familyName": "Lee"}},
        {"schemas": [USER], "userName": "inactive", "active": False, "emails": [{"value": "i@acme.com"}]},
        full_user("full"),
        full_user("managed", {"value": boss["id"]}),
        full_user("baremanager", boss["id"]),
        full_user("listmanager", [{"value": boss["id"]}]),
        {"schemas": [USER], "userName": "unicode-ü", "displayName": 'Zoë \u00e9 "quoted" \\ back'},
        {
            "schemas": [USER],
            "userName": "withref",
            ENTERPRISE: {"manager": {"value": boss["id"], "$ref": f"Users/{boss['id']}"}},
        },
    ]
    users = []
    for body in shapes:
        created = scim.a.post("/Users", body)
        assert created.status == 201, created.body
        users.append(created.body)
    group = scim.a.post(
        "/Groups", {"schemas": [GROUP], "displayName": 'Team "A"', "members": [{"value": u["id"]} for u in users[:5]]}
    ).body
    scim.a.post("/Groups", {"schemas": [GROUP], "displayName": "Second", "members": [{"value": users[3]["id"]}]})
    for user in [boss, *users]:
        reads(scim, model_app, user)
    listed = same(scim, model_app, "/Users", {"filter": 'userName eq "full"'})
    assert b'"groups": [{"value": "' + group["id"].encode() in listed
    # Nothing found, and lookups the stored path leaves to the models, agree too.
    same(scim, model_app, "/Users", {"filter": 'userName eq "nobody"'})
    same(scim, model_app, "/Users/does-not-exist")
    same(scim, model_app, "/Users", {"filter": 'userName eq "full"', "attributes": "userName"})
    same(scim, model_app, "/Users", {"filter": 'userName eq "full"', "startIndex": "2"})
    same(scim, model_app, f"/Users/{users[3]['id']}", {"excludedAttributes": "groups"})


def test_reads_stay_alike_after_every_kind_of_write(scim: ScimWorld, model_app: flask.Flask) -> None:
    user = scim.a.post("/Users", full_user("writer")).body
    other = scim.a.post("/Users", {"schemas": [USER], "userName": "other"}).body
    group = scim.a.post("/Groups", {"schemas": [GROUP], "displayName": "Before"}).body
    gid = group["id"]

    def check() -> None:
        reads(scim, model_app, user)
        reads(scim, model_app, other)

    check()
    patched = scim.a.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "title", "value": "Lead"}])
    assert patched.status == 200
    check()
    scim.a.patch(
        f"/Users/{user['id']}", [{"op": "add", "path": 'emails[type eq "other"].value', "value": "o@acme.com"}]
    )
    check()
    scim.a.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "manager", "value": other["id"]}])
    check()
    scim.a.patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}])
    check()
    scim.a.patch(
        f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": other["id"], "display": "O"}]}]
    )
    check()
    scim.a.patch(f"/Groups/{gid}", [{"op": "replace", "path": "displayName", "value": "Renamed"}])
    listed = same(scim, model_app, "/Users", {"filter": 'userName eq "writer"'})
    assert b'"display": "Renamed"' in listed
    check()
    scim.a.patch(f"/Groups/{gid}", [{"op": "remove", "path": f'members[value eq "{user["id"]}"]'}])
    check()
    put = full_user("writer")
    put["title"] = "Put"
    put["id"] = user["id"]
    assert scim.a.put(f"/Users/{user['id']}", put).status == 200
    check()
    scim.a.put(f"/Groups/{gid}", {"schemas": [GROUP], "displayName": "Put group", "members": [{"value": user["id"]}]})
    check()
    assert scim.a.delete(f"/Groups/{gid}").status == 204
    check()
    assert scim.a.delete(f"/Users/{other['id']}").status == 204
    reads(scim, model_app, user)
    same(scim, model_app, f"/Users/{other['id']}")
    same(scim, model_app, "/Users", {"filter": 'userName eq "other"'})


def test_another_orgs_token_never_reads_a_user_by_the_stored_path(scim: ScimWorld) -> None:
    user = scim.a.post("/Users", full_user("private")).body
    assert scim.b.get(f"/Users/{user['id']}").status == 404
    found = scim.b.get("/Users", query={"filter": 'userName eq "private"'})
    assert found.status == 200 and found.body["totalResults"] == 0
    found = scim.b.get("/Users", query={"filter": f'externalId eq "{user["externalId"]}"'})
    assert found.body["totalResults"] == 0


def test_discovery_answers_are_fresh_responses_and_still_need_a_token(scim: ScimWorld) -> None:
    client = scim.app.test_client()
    first = client.get(BASE + "/ServiceProviderConfig")
    second = client.get(BASE + "/ServiceProviderConfig")
    assert first.status_code == second.status_code == 200 and first.data == second.data
    assert first is not second
    elsewhere = client.get(BASE + "/ServiceProviderConfig", headers={"Host": "other.example"})
    assert b"http://other.example/scim/v2/ServiceProviderConfig" in elsewhere.data
    assert b"other.example" not in client.get(BASE + "/ServiceProviderConfig").data
    assert client.post(BASE + "/ServiceProviderConfig").status_code == 405
    assert scim.a.get("/Schemas").status == 200
    assert scim.a.get("/Schemas").status == 200
    assert client.get(BASE + "/Schemas").status_code == 401
    assert client.get(BASE + "/ResourceTypes", headers={"Authorization": "Bearer nope"}).status_code == 401


def normalised(answer: Any, ids: dict[str, str]) -> tuple[int, bytes, list[tuple[str, str]]]:
    """An answer with org b's ids and the times of writes replaced by placeholders, to compare with org a's."""
    data = answer.data
    for real, placeholder in ids.items():
        data = data.replace(real.encode(), placeholder.encode())
    data = re.sub(rb'"(created|lastModified)": "[^"]+"', rb'"\1": "T"', data)
    headers = sorted(
        (k, ids.get(v.rsplit("/", 1)[-1], v) if k != "Content-Length" else "") for k, v in answer.headers.items()
    )
    return answer.status_code, data, headers


def test_written_users_are_answered_as_the_models_answer(scim: ScimWorld, model_app: flask.Flask) -> None:
    """Create and PUT answer a User from the stored representation (org a, the default app) exactly as the model
    path answers them (org b, ``stored_reads=False``), groups and the enterprise manager included."""
    stored = scim.app.test_client()
    modelled = model_app.test_client()
    sides = {
        "a": (stored, {"Authorization": f"Bearer {scim.tokens['a']}"}),
        "b": (modelled, {"Authorization": f"Bearer {scim.tokens['b']}"}),
    }
    ids: dict[str, dict[str, str]] = {"a": {}, "b": {}}

    def send(
        side: str, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None
    ) -> Any:
        client, headers = sides[side]
        for name, real in ids[side].items():
            path = path.replace(name, real)
            if body is not None:
                body = json.loads(json.dumps(body).replace(name, real))
        data = json.dumps(body) if body is not None else None
        return client.open(
            BASE + path,
            method=method,
            data=data,
            headers={**headers, "Content-Type": "application/scim+json"},
            query_string=query,
        )

    def both(
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        answers = {side: send(side, method, path, body, query) for side in sides}
        if name is not None:
            for side, answer in answers.items():
                ids[side][name] = answer.get_json()["id"]
        a = normalised(answers["a"], {real: name for name, real in ids["a"].items()})
        b = normalised(answers["b"], {real: name for name, real in ids["b"].items()})
        assert a == b

    both("POST", "/Users", {"schemas": [USER], "userName": "boss"}, name="BOSS-ID")
    both("POST", "/Users", full_user("alice", {"value": "BOSS-ID"}), name="ALICE-ID")
    both(
        "POST",
        "/Users",
        {"schemas": [USER], "userName": "nameonly", "name": {"givenName": "N", "familyName": "O"}},
        name="N-ID",
    )
    both(
        "POST",
        "/Groups",
        {"schemas": [GROUP], "displayName": "Team", "members": [{"value": "ALICE-ID"}]},
        name="GROUP-ID",
    )
    replaced = full_user("alice", "BOSS-ID")
    replaced["title"] = "Replaced"
    both("PUT", "/Users/ALICE-ID", replaced)
    both("PUT", "/Users/ALICE-ID", replaced)  # unchanged: the resource as read
    both("PUT", "/Users/ALICE-ID", replaced, query={"attributes": "userName"})
    both("PUT", "/Users/N-ID", {"schemas": [USER], "userName": "nameonly", "displayName": "Now named"})
    both(
        "PATCH",
        "/Users/ALICE-ID",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "P"}],
        },
    )
    both("GET", "/Users/ALICE-ID")
