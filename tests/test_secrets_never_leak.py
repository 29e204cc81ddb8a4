"""Secrets never reach an output, a log, a stored error or an outbox row (invariant 7), even when a server echoes them.

Each case plants one kind of secret and points a real source at a server that quotes the request back in its error
(as some proxies and error pages do): the fake Okta echoing the ``SSWS`` token, the fake Okta echoing the OAuth
client assertion and the bearer access token of a service app, the fake Graph echoing the Entra client secret and
the bearer token, and a real slapd refusing a planted LDAP bind password. Then the real ``syncd sync``, ``syncd plan``
and ``syncd sources list`` (text and JSON) run, with syncd's own JSON log formatter on, and every output, log line,
``source.last_error``, ledger entry, plan and outbox row is searched for the secret.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd import logs
from syncd.store.models import LedgerEntry, OutboxEvent, Plan, Source
from tests.fakes.graph import FakeGraph
from tests.fakes.okta import FakeOkta

BASE = """
[database]
url = "{url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]

[[sources]]
name = "dir"
org = "acme"
{source}
"""
OKTA_TOKEN = "00PlantedOktaSSWS-token-5c1f9e2b7a4d8e6f0a3b"
ENTRA_SECRET = "Planted~Entra.Client_Secret-8Q~x2b7a4d8e6f0a3b9c"
LDAP_PASSWORD = "planted-LDAP-bind-Pa55word-4d8e6f0a"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """syncd's own JSON log formatter on the root logger, at debug level, into a buffer."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure("json", "debug", stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def everything_said(cli: Callable[..., Any], config: Path, log: io.StringIO) -> str:
    """Run what an admin runs against the failing source; return every output, log line and stored row."""
    texts: list[str] = []
    for args in (["sync", "dir"], ["plan", "dir"], ["sources", "list"], ["sources", "list", "--format", "json"]):
        result = cli("--config", str(config), *args)
        texts += [result.stdout, result.stderr]
    texts.append(log.getvalue())
    for model in (Source, LedgerEntry, Plan, OutboxEvent):
        texts += [json.dumps(row, default=str) for row in model.select().dicts()]
    sources = list(Source.select().where(Source.name == "dir"))
    assert sources and sources[0].last_error, "the failure is stored, so the search covers it"
    return "\n".join(texts)


def assert_absent(said: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in said
        assert secret[:16] not in said, "not even a prefix of it"


def test_an_okta_ssws_token_echoed_by_an_error_page_appears_nowhere(
    cli, store, database_url, write_config, tmp_path, captured_logs
):
    with FakeOkta(api_token=OKTA_TOKEN) as fake:
        fake.inject("/api/v1/", "echo", times=1000)
        write_config(OKTA_TOKEN + "\n", name="okta-token")
        source = f'kind = "okta"\nurl = "{fake.url}"\ntoken_file = "okta-token"\nretry_backoff = 0.01\nmax_retries = 1'
        config = write_config(BASE.format(url=database_url, source=source))
        said = everything_said(cli, config, captured_logs)
    assert "[redacted]" in said, "the echo reached syncd and was masked"
    assert_absent(said, OKTA_TOKEN)


@pytest.mark.parametrize("echoed", ["/oauth2/v1/token", "/api/v1/"])
def test_an_okta_client_assertion_and_access_token_echoed_appear_nowhere(
    cli, store, database_url, write_config, tmp_path, captured_logs, echoed
):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "okta.pem").write_bytes(pem)
    with FakeOkta() as fake:
        fake.register_client("0oa-planted", key.public_key(), ("okta.users.read", "okta.groups.read"))
        fake.inject(echoed, "echo", times=1000).status = 401 if echoed.startswith("/oauth2/") else 500
        source = (
            f'kind = "okta"\nurl = "{fake.url}"\nclient_id = "0oa-planted"\nprivate_key_file = "okta.pem"\n'
            "retry_backoff = 0.01\nmax_retries = 1"
        )
        config = write_config(BASE.format(url=database_url, source=source))
        said = everything_said(cli, config, captured_logs)
        access_tokens = list(fake._access)
    assert "[redacted]" in said
    assert "eyJ" not in said, "no JWT (the signed client assertion) anywhere"
    key_lines = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    assert_absent(said, *access_tokens, *key_lines[1:4])


@pytest.mark.parametrize("echoed", ["/oauth2/v2.0/token", "/v1.0/users/delta"])
def test_an_entra_client_secret_and_bearer_token_echoed_appear_nowhere(
    cli, store, database_url, write_config, tmp_path, captured_logs, echoed
):
    with FakeGraph(tmp_path / "graph") as graph:
        graph.client_secret = ENTRA_SECRET
        graph.fail(echoed, kind="echo", status=400, times=1000)
        write_config(ENTRA_SECRET + "\n", name="entra-secret")
        source = (
            f'kind = "azure"\ntenant_id = "{graph.tenant_id}"\nclient_id = "{graph.client_id}"\n'
            f'client_secret_file = "entra-secret"\nca_file = "{graph.ca_file}"\nauthority_host = "{graph.url}"\n'
            f'graph_url = "{graph.url}"\nmax_retries = 0'
        )
        config = write_config(BASE.format(url=database_url, source=source))
        said = everything_said(cli, config, captured_logs)
        bearer_tokens = list(graph._tokens)
    assert_absent(said, ENTRA_SECRET, *bearer_tokens)


def test_a_planted_ldap_bind_password_refused_by_slapd_appears_nowhere(
    cli, store, database_url, write_config, tmp_path, captured_logs
):
    from tests.ldap.conftest import start_directory
    from tests.ldap.directory import GROUPS, PEOPLE, SYNCD_DN

    slapd = start_directory(tmp_path / "slapd")
    try:
        write_config(LDAP_PASSWORD + "\n", name="ldap-password")
        source = (
            f'kind = "ldap"\nurl = "{slapd.url}"\nbind_dn = "{SYNCD_DN}"\nbind_password_file = "ldap-password"\n'
            f'users_base = "{PEOPLE}"\ngroups_base = "{GROUPS}"'
        )
        config = write_config(BASE.format(url=database_url, source=source))
        said = everything_said(cli, config, captured_logs)
    finally:
        slapd.stop()
    assert "invalid credentials" in said.lower() or "bind" in said.lower()
    assert_absent(said, LDAP_PASSWORD)
