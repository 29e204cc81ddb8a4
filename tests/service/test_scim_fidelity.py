"""SCIM fidelity in the running daemon: what Entra and Okta send is kept and answered as RFC 7643/7644 say.

Each test pushes over real HTTP into ``syncd serve`` (the real app, WSGI server and reconciler) on SQLite and on the
real PostgreSQL, and reads back through SCIM or the CLI users run.
"""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import service_config

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    """A SCIM client of one org's token against the running service."""

    def __init__(self, service, token: str) -> None:
        self.service = service
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def call(self, method: str, path: str, body=None, **params):
        answer = self.service.http.request(
            method,
            self.service.url("/scim/v2" + path),
            data=None if body is None else json.dumps(body),
            params=params or None,
            headers=self.headers,
            timeout=30,
        )
        return answer.status_code, (json.loads(answer.content) if answer.content else None)

    def user(self, name: str, **extra) -> dict:
        body = {"schemas": [USER_URN], "userName": name, "emails": [{"value": f"{name}@acme.com", "primary": True}]}
        status, created = self.call("POST", "/Users", {**body, **extra})
        assert status == 201, created
        return created

    def group(self, name: str, members=()) -> dict:
        status, created = self.call(
            "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": name, "members": members}
        )
        assert status == 201, created
        return created

    def patch(self, path: str, *operations: dict, **params):
        return self.call("PATCH", path, {"schemas": [PATCH_URN], "Operations": list(operations)}, **params)


@pytest.fixture
def running(serve, tmp_path, cli, store, database_url):
    """``syncd serve`` on SQLite or PostgreSQL (emptied by ``store``), with a SCIM token for ``acme`` and ``other``."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(database_url, folder=tmp_path))
    tokens = {}
    for org in ("acme", "other"):
        result = cli("--config", str(config), "tokens", "create", "--org", org, "--scope", "scim")
        assert result.code == 0, result.stderr
        tokens[org] = result.stdout.strip().splitlines()[-1]
    service = serve(config, run=None)
    service.wait_ready()
    return Scim(service, tokens["acme"]), Scim(service, tokens["other"]), config


def test_user_patch_answers_200_with_the_resource_and_honours_attributes(running):
    acme, _, _ = running
    user = acme.user("pat")
    status, body = acme.patch(f"/Users/{user['id']}", {"op": "replace", "path": "displayName", "value": "Pat P"})
    assert status == 200
    assert body["id"] == user["id"] and body["displayName"] == "Pat P" and body["userName"] == "pat"
    assert body["meta"]["version"] != user["meta"]["version"]
    status, body = acme.patch(
        f"/Users/{user['id']}", {"op": "replace", "path": "title", "value": "Boss"}, attributes="title"
    )
    assert status == 200 and body["title"] == "Boss" and "displayName" not in body and body["id"] == user["id"]
    status, body = acme.patch(
        f"/Users/{user['id']}", {"op": "replace", "path": "nickName", "value": "P"}, excludedAttributes="emails"
    )
    assert status == 200 and body["nickName"] == "P" and "emails" not in body


def test_group_patch_keeps_204(running):
    acme, _, _ = running
    user = acme.user("gina")
    group = acme.group("Eng")
    status, body = acme.patch(
        f"/Groups/{group['id']}", {"op": "add", "path": "members", "value": [{"value": user["id"]}]}
    )
    assert status == 204 and body is None


def test_root_search_lists_users_and_groups_paged_and_only_the_tokens_org(running):
    acme, other, _ = running
    users = [acme.user(name) for name in ("ann", "bob", "cat")]
    groups = [acme.group(name) for name in ("Alpha", "Beta")]
    other.call("POST", "/Users", {"schemas": [USER_URN], "userName": "ann-other"})
    status, everything = acme.call("POST", "/.search", {"schemas": [SEARCH_URN]})
    assert status == 200, everything
    assert everything["totalResults"] == 5
    found = {r["id"] for r in everything["Resources"]}
    assert found == {r["id"] for r in users + groups}
    kinds = [r["meta"]["resourceType"] for r in everything["Resources"]]
    assert kinds == ["User", "User", "User", "Group", "Group"]
    status, page = acme.call("POST", "/.search", {"schemas": [SEARCH_URN], "startIndex": 3, "count": 2})
    assert status == 200
    assert page["totalResults"] == 5 and page["startIndex"] == 3 and page["itemsPerPage"] == 2
    assert [r["id"] for r in page["Resources"]] == [r["id"] for r in everything["Resources"][2:4]]
    status, last = acme.call("POST", "/.search", {"schemas": [SEARCH_URN], "startIndex": 5, "count": 10})
    assert [r["id"] for r in last["Resources"]] == [everything["Resources"][4]["id"]]
    status, filtered = acme.call(
        "POST", "/.search", {"schemas": [SEARCH_URN], "filter": 'userName eq "bob" or displayName eq "Beta"'}
    )
    assert status == 200
    assert {r["id"] for r in filtered["Resources"]} == {users[1]["id"], groups[1]["id"]}
    status, counted = acme.call("POST", "/.search", {"schemas": [SEARCH_URN], "count": 0})
    assert counted["totalResults"] == 5 and counted.get("Resources", []) == []
    status, mine = other.call("POST", "/.search", {"schemas": [SEARCH_URN]})
    assert [r["userName"] for r in mine["Resources"]] == ["ann-other"]
    status, by_get = acme.call("GET", "/", filter='displayName eq "Alpha"')
    assert status == 200 and [r["id"] for r in by_get["Resources"]] == [groups[0]["id"]]


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"filter": 'userName eq "a" and ('}, "invalidFilter"),
        ({"sortBy": "userName"}, "invalidValue"),
    ],
)
def test_root_search_errors_are_rfc_7644_errors(running, body, scim_type):
    acme, _, _ = running
    status, error = acme.call("POST", "/.search", {"schemas": [SEARCH_URN], **body})
    assert status == 400
    assert error["schemas"] == [ERROR] and error["status"] == "400" and error["scimType"] == scim_type


def test_sources_list_shows_the_scim_sources_last_write(running, cli):
    acme, _, config = running

    def scim_source() -> dict:
        result = cli("--config", str(config), "sources", "list", "--format", "json")
        assert result.code == 0, result.stderr
        return next(r for r in json.loads(result.stdout) if r["name"] == "scim:acme")

    assert scim_source()["last_success_at"] is None
    acme.user("writer")
    assert scim_source()["last_success_at"] is not None
    table = cli("--config", str(config), "sources", "list").stdout
    line = next(text for text in table.splitlines() if text.startswith("scim:acme"))
    assert "never" not in line


def members_of(scim: Scim, group_id: str) -> dict[str, dict]:
    status, body = scim.call("GET", f"/Groups/{group_id}")
    assert status == 200, body
    return {m["value"]: m for m in body.get("members", [])}


def test_group_members_read_back_exactly_as_written(running):
    acme, _, _ = running
    ann, bob, cat = (acme.user(name) for name in ("ann", "bob", "cat"))
    base = acme.service.url("/scim/v2")
    written = {"value": ann["id"], "$ref": f"{base}/Users/{ann['id']}", "type": "User", "display": "Ann (HR)"}
    group = acme.group("Sales", members=[written, {"value": bob["id"]}])
    members = members_of(acme, group["id"])
    assert members[ann["id"]] == written
    assert members[bob["id"]]["type"] == "User" and members[bob["id"]]["$ref"] == f"{base}/Users/{bob['id']}"
    # Okta adds a member with its display; the one-row fast path keeps it.
    status, _ = acme.patch(
        f"/Groups/{group['id']}", {"op": "add", "path": "members", "value": [{"value": cat["id"], "display": "Cat"}]}
    )
    assert status == 204
    assert members_of(acme, group["id"])[cat["id"]]["display"] == "Cat"
    # A replace of the list states each member again: what it says now is what reads back.
    again = {**written, "display": "Ann (Sales)"}
    status, _ = acme.patch(f"/Groups/{group['id']}", {"op": "replace", "path": "members", "value": [again]})
    assert status == 204
    assert members_of(acme, group["id"]) == {ann["id"]: again}
    before = acme.call("GET", f"/Groups/{group['id']}")[1]["meta"]["version"]
    status, _ = acme.patch(f"/Groups/{group['id']}", {"op": "replace", "path": "members", "value": [written]})
    assert status == 204 and members_of(acme, group["id"]) == {ann["id"]: written}
    assert acme.call("GET", f"/Groups/{group['id']}")[1]["meta"]["version"] != before  # restating moves the ETag
    # PUT, and a PATCH the library applies to the whole group (a filter it must evaluate), keep it too.
    put = {"schemas": [GROUP_URN], "displayName": "Sales", "members": [written, {"value": cat["id"], "display": "C"}]}
    status, _ = acme.call("PUT", f"/Groups/{group['id']}", put)
    assert status == 200
    assert members_of(acme, group["id"]) == {
        ann["id"]: written,
        cat["id"]: {"value": cat["id"], "$ref": f"{base}/Users/{cat['id']}", "type": "User", "display": "C"},
    }
    status, _ = acme.patch(
        f"/Groups/{group['id']}", {"op": "remove", "path": f'members[value eq "{cat["id"]}" and type eq "User"]'}
    )
    assert status == 204
    assert members_of(acme, group["id"]) == {ann["id"]: written}


def members_json(cli, config, *extra: str) -> dict[str, dict]:
    result = cli("--config", str(config), "members", "list", "--org", "acme", "--format", "json", *extra)
    assert result.code == 0, result.stderr
    return {row["email"]: row for row in json.loads(result.stdout)}


def test_entra_manager_shapes_are_kept_and_shown_on_the_member(running, cli):
    acme, _, config = running
    boss, deputy, report = acme.user("boss"), acme.user("deputy"), acme.user("report")
    path = f"{ENTERPRISE}:manager"
    shapes = [
        ("Add", boss["id"], "boss@acme.com"),  # Entra's default: a bare id
        ("replace", {"value": deputy["id"]}, "deputy@acme.com"),  # aadOptscim062020
        ("Replace", [{"value": boss["id"], "$ref": f"../Users/{boss['id']}"}], "boss@acme.com"),  # a reference list
    ]
    for op, value, expected in shapes:
        status, body = acme.patch(f"/Users/{report['id']}", {"op": op, "path": path, "value": value})
        assert status == 200, body
        assert body[ENTERPRISE]["manager"]["value"] == (boss if expected.startswith("boss") else deputy)["id"]
        assert members_json(cli, config)["report@acme.com"]["manager"] == expected
    status, body = acme.patch(f"/Users/{report['id']}", {"op": "replace", "path": "manager", "value": deputy["id"]})
    assert status == 200 and members_json(cli, config)["report@acme.com"]["manager"] == "deputy@acme.com"
    status, _ = acme.patch(f"/Users/{report['id']}", {"op": "remove", "path": path})
    assert status == 200 and members_json(cli, config)["report@acme.com"]["manager"] is None
    status, _ = acme.patch(f"/Users/{report['id']}", {"op": "add", "path": path, "value": boss["id"]})
    live = members_json(cli, config)
    assert live["report@acme.com"]["manager"] == "boss@acme.com" and live["boss@acme.com"]["manager"] is None
    created = acme.user(
        "newcomer", **{"schemas": [USER_URN, ENTERPRISE], ENTERPRISE: {"manager": [{"value": boss["id"]}]}}
    )
    assert created[ENTERPRISE]["manager"]["value"] == boss["id"]
    live = members_json(cli, config)
    assert live["newcomer@acme.com"]["manager"] == "boss@acme.com"
    # The ledger's answer for now (syncd members list --at) agrees with the live one, manager included.
    then = members_json(cli, config, "--at", "2999-01-01T00:00:00Z")
    assert {k: (v["manager"], v["role"], v["status"]) for k, v in then.items()} == {
        k: (v["manager"], v["role"], v["status"]) for k, v in live.items()
    }


def test_a_managers_new_email_reaches_the_people_they_manage(running, cli):
    acme, _, config = running
    boss = acme.user("boss")
    acme.user("report", **{"schemas": [USER_URN, ENTERPRISE], ENTERPRISE: {"manager": {"value": boss["id"]}}})
    assert members_json(cli, config)["report@acme.com"]["manager"] == "boss@acme.com"
    status, _ = acme.patch(
        f"/Users/{boss['id']}", {"op": "replace", "path": "emails", "value": [{"value": "chief@acme.com"}]}
    )
    assert status == 200
    assert members_json(cli, config)["report@acme.com"]["manager"] == "chief@acme.com"
