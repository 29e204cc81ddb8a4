"""What the end-to-end tests of a directory share: the config of an org fed by one LDAP source (OpenLDAP, Samba AD,
389-DS), and the members the CLI lists (those tests and the SCIM pushes into ``syncd serve`` read them alike)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def ldap_sync_config(
    database_url: str,
    *,
    source: str,
    url: str,
    bind_dn: str,
    password_file: str | Path,
    users_base: str,
    groups_base: str,
    domain: str,
    org: str = "",
    settings: str = "",
) -> str:
    """Org ``acme`` (mail ``domain``; ``org``: its other keys, ``[orgs.policy]`` and rules) and the LDAP source
    ``source`` bound as ``bind_dn`` (``settings``: its other keys)."""
    return f"""
[database]
url = "{database_url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["{domain}"]
{org}
[[sources]]
name = "{source}"
org = "acme"
kind = "ldap"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password_file = "{password_file}"
users_base = "{users_base}"
groups_base = "{groups_base}"
{settings}"""


def members(cli: Any, config: Any, *options: str, org: str = "acme") -> dict[str, dict[str, Any]]:
    """``syncd members list --format json`` (with ``options``, e.g. ``--at``) by email."""
    result = cli("--config", str(config), "members", "list", "--org", org, "--format", "json", *options)
    assert result.code == 0, result.stderr
    return {m["email"]: m for m in json.loads(result.stdout)}
