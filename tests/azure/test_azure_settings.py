"""The ``azure`` source keys as the config file gives them: defaults, checks, and errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.azure import Settings
from syncd import config
from syncd.common.errors import ConfigError


def _source(**keys: Any) -> dict[str, Any]:
    return {
        "orgs": [{"slug": "acme"}],
        "sources": [
            {
                "name": "entra",
                "org": "acme",
                "kind": "azure",
                "tenant_id": "contoso.onmicrosoft.com",
                "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                **keys,
            }
        ],
    }


def test_defaults_point_at_the_global_cloud(tmp_path: Path) -> None:
    settings = config.parse(_source(client_secret_file="secret"), base=tmp_path).sources[0].connector

    assert isinstance(settings, Settings)
    assert settings.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert settings.scope == "https://graph.microsoft.com/.default"
    assert settings.client_secret_file == str(tmp_path / "secret")


def test_national_cloud_hosts_are_used_as_given() -> None:
    settings = (
        config.parse(
            _source(
                client_secret_env="ENTRA_SECRET",
                authority_host="https://login.microsoftonline.us/",
                graph_url="https://graph.microsoft.us",
                select=["officeLocation"],
            )
        )
        .sources[0]
        .connector
    )

    assert settings.authority == "https://login.microsoftonline.us/contoso.onmicrosoft.com"
    assert settings.scope == "https://graph.microsoft.us/.default"
    assert settings.user_attributes()[-1] == "officeLocation"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, "sources[0].client_secret_file, client_secret_env or certificate_file: give exactly one credential"),
        (
            {"client_secret_file": "a", "certificate_file": "b"},
            "give exactly one credential (got client_secret_file, certificate_file)",
        ),
        (
            {"client_secret_env": "X", "graph_url": "http://graph.local"},
            "sources[0].graph_url: expected an https origin",
        ),
        (
            {"client_secret_env": "X", "authority_host": "https://login.microsoftonline.com/tenant"},
            "sources[0].authority_host: expected an https origin",
        ),
        ({"client_secret_env": "X", "page_size": 5000}, "sources[0].page_size: expected 1 to 999"),
        ({"client_secret_env": "X", "select": ["bad name"]}, "sources[0].select: 'bad name' is not a Graph property"),
        ({"client_secret_env": "X", "group_ids": [str(i) for i in range(51)]}, "sources[0].group_ids: Graph filters"),
        ({"client_secret_env": "X", "private_key_file": "k"}, "sources[0].private_key_file: only meaningful with"),
        ({"client_secret": "inline!"}, "sources[0].client_secret: unknown key"),
        ({"client_secret_env": "X", "tenant_id": "a/b"}, "sources[0].tenant_id: 'a/b' is not a tenant id"),
    ],
)
def test_invalid_keys_are_named_in_the_error(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(_source(**keys))

    assert expected in str(caught.value)
    assert "inline!" not in str(caught.value)
