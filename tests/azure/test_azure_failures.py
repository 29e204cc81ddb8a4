"""How the Entra connector fails: one line naming the source and the fix, no partial result, never a secret."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.azure import Connector
from connectors.interface import Delta, Snapshot
from syncd.common.errors import ConnectorError
from tests.fakes.graph import FakeGraph, make_client_certificate


def _fails(connector: Connector, cursor: str | None, graph: FakeGraph) -> str:
    with pytest.raises(ConnectorError) as caught:
        connector.read(cursor)
    message = str(caught.value)
    assert message.startswith("source entra: ")
    assert "\n" not in message
    assert graph.client_secret not in message
    assert "Bearer" not in message
    return message


def _fill(graph: FakeGraph, users: int = 120) -> list[str]:
    return [graph.add_user(name=f"user{i}") for i in range(users)]


# -- throttling -----------------------------------------------------------------------------------------------------


def test_throttled_request_waits_its_retry_after_then_succeeds(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    graph.throttle(times=1, status=429, retry_after="7")

    snapshot = connector.read(None)

    assert {u.key for u in snapshot.users} == set(keys)
    assert connector.throttle.waits == [7.0]


def test_service_unavailable_is_retried_after_its_retry_after(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    graph.throttle(times=2, status=503, retry_after="3", path="/v1.0/users/delta")

    assert {u.key for u in connector.read(None).users} == set(keys)
    assert connector.throttle.waits == [3.0, 3.0]


def test_throttling_without_retry_after_backs_off_exponentially(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph, 3)
    graph.throttle(times=3, retry_after=None)

    connector.read(None)

    assert connector.throttle.waits == [1.0, 2.0, 4.0]


def test_throttling_past_the_wait_budget_fails_and_names_the_setting(
    graph: FakeGraph, make_connector: Callable[..., Connector]
) -> None:
    _fill(graph, 3)
    graph.throttle(times=50, retry_after="10")
    connector = make_connector(max_throttle_wait=30)

    message = _fails(connector, None, graph)

    assert "throttling" in message and "max_throttle_wait" in message and "request-id" in message
    assert connector.throttle.waited <= 30


def test_requests_slow_down_when_graph_reports_the_limit_is_near(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph)
    graph.limit_percentage = 1.0

    connector.read(None)

    pages = len(graph.graph_requests())
    assert connector.throttle.waits == [pytest.approx(2.0)] * (pages - 1)  # before every request but the first


def test_an_access_token_rejected_as_expired_is_replaced_once(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    cursor = connector.read(None).cursor
    graph.expire_tokens()
    graph.update_user(keys[0], jobTitle="CTO")

    delta = connector.read(cursor)

    assert isinstance(delta, Delta) and [u.title for u in delta.users] == ["CTO"]
    assert graph.token_requests == 2


def test_a_token_rejected_again_after_renewal_fails(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph, 3)
    graph.fail(
        "/v1.0/users/delta",
        status=401,
        times=2,
        body={"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure."}},
    )

    message = _fails(connector, None, graph)

    assert "401 InvalidAuthenticationToken" in message and "graph_url" in message


# -- broken pages and connections -----------------------------------------------------------------------------------


def test_malformed_json_page_fails_without_a_partial_result(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph)
    graph.fail("/v1.0/users/delta", "invalid-json", after=1)

    message = _fails(connector, None, graph)

    assert "malformed page 2 of /users/delta (not valid JSON)" in message and "nothing was applied" in message


def test_page_without_next_or_delta_link_fails(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph, 3)
    cursor = connector.read(None).cursor
    graph.fail("/v1.0/groups/delta", "no-links")

    message = _fails(connector, cursor, graph)

    assert "malformed page 1 of /groups/delta" in message and "@odata.deltaLink" in message


def test_transient_server_error_mid_paging_is_retried(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    graph.fail("/v1.0/users/delta", status=500, after=1, times=2)

    assert {u.key for u in connector.read(None).users} == set(keys)
    assert connector.throttle.waits == [1.0, 2.0]


def test_persistent_server_error_mid_paging_fails_after_bounded_retries(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph)
    graph.fail("/v1.0/users/delta", status=500, after=1, times=100)

    message = _fails(connector, None, graph)

    assert "page 2 of /users/delta (HTTP 500 generalException) 4 times" in message
    assert len(graph.graph_requests("/v1.0/users/delta")) == 1 + 4


def test_connection_cut_mid_paging_fails_clearly_after_retries(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph)
    graph.fail("/v1.0/users/delta", "cut", after=1, times=100)

    message = _fails(connector, None, graph)

    assert "page 2 of /users/delta failed" in message and "check the network path" in message


def test_connection_cut_once_is_retried(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    graph.fail("/v1.0/users/delta", "cut", after=1)

    assert {u.key for u in connector.read(None).users} == set(keys)


def test_failed_delta_read_leaves_the_cursor_usable(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph)
    cursor = connector.read(None).cursor
    graph.update_user(keys[0], jobTitle="CTO")
    graph.fail("/v1.0/groups/delta", status=500, times=100)
    _fails(connector, cursor, graph)
    graph.faults.clear()

    delta = connector.read(cursor)

    assert isinstance(delta, Delta) and [u.title for u in delta.users] == ["CTO"]


def test_stored_link_to_another_host_is_refused_without_sending_the_token(
    graph: FakeGraph, connector: Connector
) -> None:
    _fill(graph, 2)
    state = json.loads(connector.read(None).cursor or "")
    state["users"] = "https://attacker.example/v1.0/users/delta?$deltatoken=x"

    message = _fails(connector, json.dumps(state), graph)

    assert "outside" in message and "refusing to send the token" in message


# -- permissions and credentials ------------------------------------------------------------------------------------


def test_missing_user_permission_names_user_read_all(graph: FakeGraph, connector: Connector) -> None:
    graph.permissions = {"GroupMember.Read.All"}

    message = _fails(connector, None, graph)

    assert "403 Authorization_RequestDenied" in message and "User.Read.All" in message


def test_missing_group_permission_names_groupmember_read_all(graph: FakeGraph, connector: Connector) -> None:
    graph.permissions = {"User.Read.All"}

    message = _fails(connector, None, graph)

    assert "/groups/delta" in message and "GroupMember.Read.All" in message


def test_wrong_client_secret_names_the_aadsts_code_and_never_the_secret(
    graph: FakeGraph, connector: Connector, secret_file: Path
) -> None:
    secret_file.write_text("wrong-" + graph.client_secret, encoding="utf-8")

    message = _fails(connector, None, graph)

    assert "AADSTS7000215" in message and "client_secret_file" in message
    assert "wrong-" not in message
    assert graph.graph_requests() == []


def test_unknown_client_id_names_aadsts700016(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    message = _fails(make_connector(client_id="00000000-0000-0000-0000-000000000000"), None, graph)

    assert "AADSTS700016" in message and "check client_id and tenant_id" in message


def test_unknown_tenant_names_aadsts90002(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    message = _fails(make_connector(tenant_id="nosuchtenant.onmicrosoft.com"), None, graph)

    assert "AADSTS90002" in message and "tenant_id" in message


def test_secret_from_an_environment_variable_is_used(
    graph: FakeGraph, make_connector: Callable[..., Connector], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = graph.add_user(name="ada")
    monkeypatch.setenv("ENTRA_SECRET", graph.client_secret)

    assert [u.key for u in make_connector(client_secret_env="ENTRA_SECRET").read(None).users] == [key]


def test_unset_secret_variable_is_named(graph: FakeGraph, make_connector: Callable[..., Connector]) -> None:
    message = _fails(make_connector(client_secret_env="SYNCD_TEST_UNSET_SECRET"), None, graph)

    assert "SYNCD_TEST_UNSET_SECRET" in message and "client_secret_env" in message


def test_certificate_credential_signs_a_client_assertion_entra_accepts(
    graph: FakeGraph, make_connector: Callable[..., Connector], tmp_path: Path
) -> None:
    key = graph.add_user(name="ada")
    graph.client_certificate = make_client_certificate(tmp_path / "app.pem")

    assert [u.key for u in make_connector(certificate_file=str(tmp_path / "app.pem")).read(None).users] == [key]


def test_certificate_not_registered_on_the_app_names_aadsts700027(
    graph: FakeGraph, make_connector: Callable[..., Connector], tmp_path: Path
) -> None:
    graph.client_certificate = make_client_certificate(tmp_path / "registered.pem")
    make_client_certificate(tmp_path / "other.pem")

    message = _fails(make_connector(certificate_file=str(tmp_path / "other.pem")), None, graph)

    assert "AADSTS700027" in message and "certificate_file" in message


def test_untrusted_server_certificate_asks_for_ca_file(
    graph: FakeGraph, make_connector: Callable[..., Connector]
) -> None:
    message = _fails(make_connector(ca_file=None), None, graph)

    assert "TLS certificate not trusted; set ca_file" in message


def test_environment_ca_bundle_cannot_override_ca_file(
    graph: FakeGraph, make_connector: Callable[..., Connector], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = graph.add_user(name="ada")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/bundle.pem")

    assert [u.key for u in make_connector().read(None).users] == [key]


def test_unreachable_authority_names_the_host(make_connector: Callable[..., Connector]) -> None:
    connector = make_connector(authority_host="https://127.0.0.1:9", graph_url="https://127.0.0.1:9")

    with pytest.raises(ConnectorError, match=r"cannot reach https://127.0.0.1:9 for a token .*check authority_host"):
        connector.read(None)


def test_failure_during_a_resync_is_an_error_not_a_partial_snapshot(graph: FakeGraph, connector: Connector) -> None:
    _fill(graph)
    cursor = connector.read(None).cursor
    graph.reset_delta_tokens("410")
    graph.fail("/v1.0/users/delta", "invalid-json", after=2)

    _fails(connector, cursor, graph)
    graph.faults.clear()

    assert isinstance(connector.read(cursor), Snapshot)


def test_missing_ca_file_is_named(graph: FakeGraph, make_connector: Callable[..., Connector], tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match=r"^source entra: cannot load ca_file .*missing\.pem .*check the path$"):
        make_connector(ca_file=str(tmp_path / "missing.pem"))


def test_certificate_file_without_a_private_key_is_named(
    graph: FakeGraph, make_connector: Callable[..., Connector], tmp_path: Path
) -> None:
    certificate = make_client_certificate(tmp_path / "app.pem")
    (tmp_path / "cert-only.pem").write_text(certificate, encoding="utf-8")

    message = _fails(make_connector(certificate_file=str(tmp_path / "cert-only.pem")), None, graph)

    assert "no private key in certificate_file" in message


def test_token_expired_by_the_servers_clock_is_renewed(graph: FakeGraph, connector: Connector) -> None:
    keys = _fill(graph, 3)
    cursor = connector.read(None).cursor
    graph.clock_offset = graph.token_lifetime + 60  # msal still trusts its cached token; Graph does not
    graph.update_user(keys[0], jobTitle="CTO")

    delta = connector.read(cursor)

    assert isinstance(delta, Delta) and [u.title for u in delta.users] == ["CTO"]
    sent = [r["headers"]["authorization"] for r in graph.graph_requests("/v1.0/users/delta")]
    assert sent[-1] != sent[-2]  # the rejected token was not sent again
    assert graph.token_requests == 2


def test_retry_after_as_an_http_date_is_honoured() -> None:
    from email.utils import formatdate

    from connectors.azure.throttle import Throttle

    wait = Throttle(60).retry_after({"Retry-After": formatdate(time.time() + 30, usegmt=True)}, attempt=1)

    assert 0 < wait <= 30


def test_a_fixed_secret_file_is_picked_up_by_the_next_read(
    graph: FakeGraph, connector: Connector, secret_file: Path
) -> None:
    key = graph.add_user(name="ada")
    secret_file.write_text("expired-secret", encoding="utf-8")
    _fails(connector, None, graph)
    secret_file.write_text(graph.client_secret, encoding="utf-8")

    assert [u.key for u in connector.read(None).users] == [key]
