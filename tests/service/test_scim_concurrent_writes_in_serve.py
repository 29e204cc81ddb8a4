"""Concurrent writes of one resource through a running ``syncd serve`` (RFC 7644 §3.14): without ``If-Match`` every
write is answered 200 (they serialise on the row and the later one wins, reading what the earlier wrote); with a stale
``If-Match`` the answer is 412. Real command, real HTTP with keep-alive clients on threads, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.service.conftest import service_config
from tests.service.scim_push import GROUP, PATCH, USER

CLIENTS = 6
WRITES_EACH = 8


@pytest.fixture
def running(serve, tmp_path, cli, store, database_url):
    """``syncd serve`` on SQLite or PostgreSQL (emptied by ``store``) and a SCIM token of ``acme``."""
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(database_url, folder=tmp_path))
    result = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "scim")
    assert result.code == 0, result.stderr
    service = serve(config, run=None)
    service.wait_ready()
    return service, result.stdout.strip().splitlines()[-1]


def client(token: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
    return session


def patch_body(*operations: dict) -> str:
    return json.dumps({"schemas": [PATCH], "Operations": list(operations)})


def in_parallel(service, token: str, requests_of: list[list[tuple[str, str, str]]]) -> list[tuple[int, str]]:
    """Send each list of (method, path, body) on its own keep-alive client, all clients at once."""

    def send_all(batch: list[tuple[str, str, str]]) -> list[tuple[int, str]]:
        with client(token) as session:
            return [
                (answer.status_code, answer.text)
                for answer in (
                    session.request(method, service.url("/scim/v2" + path), data=body, timeout=60)
                    for method, path, body in batch
                )
            ]

    with ThreadPoolExecutor(len(requests_of)) as pool:
        return [answer for answers in pool.map(send_all, requests_of) for answer in answers]


def test_concurrent_patches_without_if_match_all_succeed_and_stale_if_match_is_refused(running):
    service, token = running
    http = client(token)
    created = http.post(
        service.url("/scim/v2/Users"),
        data=json.dumps({"schemas": [USER], "userName": "ann@acme.com", "displayName": "Ann", "title": "start"}),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    user = created.json()["id"]
    first_tag = created.headers["ETag"]

    names = [[f"name-{c}-{i}" for i in range(WRITES_EACH)] for c in range(CLIENTS)]
    titles = [[f"title-{c}-{i}" for i in range(WRITES_EACH)] for c in range(CLIENTS)]
    batches = [
        [
            (
                "PATCH",
                f"/Users/{user}",
                patch_body(
                    {"op": "replace", "path": "displayName", "value": names[c][i]},
                    {"op": "replace", "path": "title", "value": titles[c][i]},
                ),
            )
            for i in range(WRITES_EACH)
        ]
        for c in range(CLIENTS)
    ]
    answers = in_parallel(service, token, batches)
    assert [status for status, _ in answers] == [200] * (CLIENTS * WRITES_EACH), [
        text for status, text in answers if status != 200
    ]

    final = http.get(service.url(f"/scim/v2/Users/{user}"), timeout=30).json()
    written = {(n, t) for ns, ts in zip(names, titles, strict=True) for n, t in zip(ns, ts, strict=True)}
    assert (final["displayName"], final["title"]) in written
    assert final["meta"]["version"] == f'W/"{1 + CLIENTS * WRITES_EACH}"'

    stale = http.patch(
        service.url(f"/scim/v2/Users/{user}"),
        data=patch_body({"op": "replace", "path": "displayName", "value": "late"}),
        headers={"If-Match": first_tag},
        timeout=30,
    )
    assert stale.status_code == 412, stale.text
    assert http.get(service.url(f"/scim/v2/Users/{user}"), timeout=30).json()["displayName"] == final["displayName"]


def test_concurrent_member_adds_to_one_group_without_if_match_all_succeed_and_none_is_lost(running):
    service, token = running
    http = client(token)
    people = []
    for i in range(CLIENTS * 3):
        answer = http.post(
            service.url("/scim/v2/Users"),
            data=json.dumps({"schemas": [USER], "userName": f"p{i}@acme.com"}),
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        people.append(answer.json()["id"])
    answer = http.post(
        service.url("/scim/v2/Groups"), data=json.dumps({"schemas": [GROUP], "displayName": "Staff"}), timeout=30
    )
    assert answer.status_code == 201, answer.text
    group = answer.json()["id"]
    group_tag = answer.headers["ETag"]

    batches = [
        [
            ("PATCH", f"/Groups/{group}", patch_body({"op": "add", "path": "members", "value": [{"value": person}]}))
            for person in people[c::CLIENTS]
        ]
        for c in range(CLIENTS)
    ]
    answers = in_parallel(service, token, batches)
    assert {status for status, _ in answers} <= {200, 204}, [text for status, text in answers if status >= 300]

    read = http.get(service.url(f"/scim/v2/Groups/{group}"), timeout=30).json()
    assert sorted(m["value"] for m in read["members"]) == sorted(people)

    stale = http.patch(
        service.url(f"/scim/v2/Groups/{group}"),
        data=patch_body({"op": "remove", "path": f'members[value eq "{people[0]}"]'}),
        headers={"If-Match": group_tag},
        timeout=30,
    )
    assert stale.status_code == 412, stale.text
