"""The SCIM hot path in the running daemon: a GET by id and ``userName`` / ``externalId`` lookups answer from the
stored representation (scim/representation.py), and stay right after group renames, membership changes and deletes
(the byte-for-byte comparison with the model path is tests/scim/test_scim_stored_reads.py)."""

from __future__ import annotations

import json

from tests.service.test_scim_fidelity import ENTERPRISE, GROUP_URN, USER_URN, Scim, running  # noqa: F401


def read(scim: Scim, path: str, **params: str) -> tuple[int, dict, dict]:
    answer = scim.service.http.get(
        scim.service.url("/scim/v2" + path), params=params or None, headers=scim.headers, timeout=30
    )
    return answer.status_code, json.loads(answer.content), dict(answer.headers)


def test_reads_from_the_stored_representation_follow_every_write(running) -> None:  # noqa: F811
    acme, other, _ = running
    boss = acme.user("boss")
    body = {
        "schemas": [USER_URN, ENTERPRISE],
        "externalId": "ext-ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        ENTERPRISE: {"department": "R&D", "manager": {"value": boss["id"]}},
    }
    status, ada = acme.call("POST", "/Users", {**body, "userName": "ada", "emails": [{"value": "ada@acme.com"}]})
    assert status == 201, ada
    group = acme.group("Engineering", [{"value": ada["id"]}])

    status, by_id, headers = read(acme, f"/Users/{ada['id']}")
    assert status == 200 and headers["ETag"] == by_id["meta"]["version"]
    assert list(by_id)[:4] == ["schemas", "id", "externalId", "meta"]
    assert by_id["groups"] == [
        {
            "value": group["id"],
            "$ref": acme.service.url(f"/scim/v2/Groups/{group['id']}"),
            "display": "Engineering",
            "type": "direct",
        }
    ]
    for params in ({"filter": 'userName eq "ADA"'}, {"filter": 'externalId eq "ext-ada"', "count": "10"}):
        status, found, _ = read(acme, "/Users", **params)
        assert status == 200 and found["totalResults"] == 1 and found["Resources"] == [by_id]

    acme.patch(f"/Groups/{group['id']}", {"op": "replace", "path": "displayName", "value": "Research"})
    _, found, _ = read(acme, "/Users", filter='userName eq "ada"')
    assert [g["display"] for g in found["Resources"][0]["groups"]] == ["Research"]

    acme.patch(f"/Groups/{group['id']}", {"op": "remove", "path": f'members[value eq "{ada["id"]}"]'})
    _, now, _ = read(acme, f"/Users/{ada['id']}")
    assert "groups" not in now and now["meta"]["version"] == by_id["meta"]["version"]

    status, replaced = acme.call(
        "PUT",
        f"/Users/{ada['id']}",
        {**body, "userName": "ada", "emails": [{"value": "ada@acme.com"}], "title": "Countess"},
    )
    assert status == 200
    _, now, headers = read(acme, f"/Users/{ada['id']}")
    assert now == replaced and now["title"] == "Countess" and headers["ETag"] == replaced["meta"]["version"]

    assert read(other, f"/Users/{ada['id']}")[0] == 404
    assert read(other, "/Users", filter='userName eq "ada"')[1]["totalResults"] == 0

    assert acme.call("DELETE", f"/Users/{ada['id']}")[0] == 204
    assert read(acme, f"/Users/{ada['id']}")[0] == 404
    assert read(acme, "/Users", filter='externalId eq "ext-ada"')[1]["totalResults"] == 0


def test_service_provider_config_is_the_same_answer_each_time_without_a_token(running) -> None:  # noqa: F811
    acme, _, _ = running
    url = acme.service.url("/scim/v2/ServiceProviderConfig")
    first = acme.service.http.get(url, timeout=30)
    second = acme.service.http.get(url, timeout=30)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert json.loads(first.content)["meta"]["location"] == url
    assert acme.service.http.get(acme.service.url("/scim/v2/Schemas"), timeout=30).status_code == 401
