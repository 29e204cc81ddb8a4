"""A token revoked or rotated with ``syncd tokens`` (another process) is refused by a running ``syncd serve`` from
the next request on, though the service keeps the tokens it has authenticated (syncd/admin/tokens.py): SCIM and the
admin API, SQLite and PostgreSQL."""

from __future__ import annotations

import re

from tests.service.conftest import service_config


def test_a_token_revoked_by_the_cli_is_refused_from_the_next_request(serve, tmp_path, cli, store, database_url):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(database_url, folder=tmp_path))

    def create(scope: str) -> tuple[int, dict[str, str]]:
        made = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", scope)
        assert made.code == 0, made.stderr
        token_id = int(re.search(r"token (\d+) ", made.stdout).group(1))
        return token_id, {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}

    old_id, old = create("scim")
    admin_id, admin = create("admin")
    service = serve(config, run=None)
    service.wait_ready()
    for _ in range(3):  # known to the service now
        assert service.get("/scim/v2/Users", headers=old).status_code == 200
        assert service.get("/scim/v2/ServiceProviderConfig", headers=old).status_code == 200
        assert service.get("/admin/v1/sources", headers=admin).status_code == 200

    _, new = create("scim")  # rotation: the new token first, then the old one revoked
    assert cli("--config", str(config), "tokens", "revoke", str(old_id)).code == 0
    assert cli("--config", str(config), "tokens", "revoke", str(admin_id)).code == 0

    refused = service.get("/scim/v2/Users", headers=old)
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/scim+json"
    assert service.get("/scim/v2/Schemas", headers=old).status_code == 401
    assert service.get("/admin/v1/sources", headers=admin).status_code == 401
    assert service.get("/scim/v2/Users", headers=new).status_code == 200
