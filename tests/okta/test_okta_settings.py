"""The ``[[sources]]`` keys of kind okta, validated through the config loader as a user's file would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.okta import Settings
from syncd import config
from syncd.common.errors import ConfigError


def okta_source(**keys: Any) -> Settings:
    table = {"name": "okta", "org": "acme", "kind": "okta", **keys}
    loaded = config.parse({"orgs": [{"slug": "acme"}], "sources": [table]}, base=Path("/etc/syncd"))
    settings = loaded.sources[0].connector
    assert isinstance(settings, Settings)
    return settings


def test_api_token_source_gets_defaults_that_suit_a_large_org() -> None:
    settings = okta_source(url="https://acme.okta.com", token_file="okta.token")

    assert settings.token_file == "/etc/syncd/okta.token"  # relative to the config's folder
    assert (settings.page_size, settings.member_page_size, settings.rate_limit_share) == (200, 1000, 0.5)
    assert settings.requested_scopes == ("okta.users.read", "okta.groups.read")


def test_service_app_source_asks_for_the_log_scope_only_when_it_reads_the_log() -> None:
    settings = okta_source(
        url="https://acme.okta.com", client_id="0oa1", private_key_file="/etc/syncd/okta.pem", system_log=True
    )

    assert settings.oauth
    assert settings.requested_scopes == ("okta.users.read", "okta.groups.read", "okta.logs.read")


@pytest.mark.parametrize(
    ("keys", "complaint"),
    [
        ({"url": "https://acme.okta.com"}, "give either token_file/token_env"),
        ({"url": "https://acme.okta.com", "token_env": "T", "client_id": "0oa1"}, "not both"),
        ({"url": "https://acme.okta.com", "client_id": "0oa1"}, "needs both client_id and private_key_file"),
        ({"url": "http://acme.okta.com", "token_env": "T"}, "plain http"),
        ({"url": "https://acme.okta.com/api/v1", "token_env": "T"}, "without a path"),
        ({"url": "https://acme.okta.com", "token_env": "T", "page_size": 500}, "page_size: expected 1..200"),
        ({"url": "https://acme.okta.com", "token_env": "T", "rate_limit_share": 1.5}, "rate_limit_share"),
        ({"url": "https://acme.okta.com", "token_env": "T", "group_types": ["TEAM"]}, "not an Okta group type"),
        ({"url": "https://acme.okta.com", "token": "inline-secret"}, "sources[0].token: unknown key"),
    ],
)
def test_bad_okta_settings_are_refused_naming_the_key(keys: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        okta_source(**keys)

    assert complaint in str(caught.value)
    assert "inline-secret" not in str(caught.value)


def test_plain_http_is_allowed_to_a_loopback_address_only() -> None:
    assert okta_source(url="http://127.0.0.1:8443", token_env="T").base_url == "http://127.0.0.1:8443"
