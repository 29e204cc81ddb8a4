"""``syncd serve`` answers SCIM's HTTP-level errors (a body over ``server.max_body_bytes``, a method SCIM does not
have) in RFC 7644 §3.12 JSON, as its config promises: not cheroot's text/plain 413 nor Flask's HTML 405. The real
command over real HTTP, with the real app and WSGI server."""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import service_config

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture
def running(serve, tmp_path, cli):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, server="max_body_bytes = 4096", folder=tmp_path))
    result = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "scim")
    token = result.stdout.strip().splitlines()[-1]
    service = serve(config, run=None)
    service.wait_ready()
    return service, {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}


def assert_scim_error(answer, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/scim+json")
    body = json.loads(answer.content)
    assert body["schemas"] == [ERROR] and body["status"] == str(status)


def test_a_body_over_the_limit_is_a_scim_413_over_http(running):
    service, headers = running
    body = json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x" * 10_000})
    answer = service.http.post(service.url("/scim/v2/Users"), data=body, headers=headers, timeout=10)
    assert_scim_error(answer, 413)


@pytest.mark.parametrize("method", ["PROPFIND", "TRACE"])
def test_a_method_scim_does_not_have_is_a_scim_405_over_http(running, method):
    service, headers = running
    answer = service.http.request(method, service.url("/scim/v2/Users"), headers=headers, timeout=10)
    assert_scim_error(answer, 405)
    assert "PATCH" in answer.headers["Allow"]


def test_outside_scim_flask_answers_stand(running):
    service, _ = running
    assert service.http.request("PROPFIND", service.url("/healthz"), timeout=10).status_code == 405
