"""SCIM errors in ``syncd serve``'s logs: a fixed event name to alert on, the client's mistake in ``detail``."""

from __future__ import annotations

from tests.service.conftest import service_config


def test_a_scim_4xx_logs_a_fixed_event_name_with_the_text_in_detail(serve, tmp_path, cli):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", folder=tmp_path))
    created = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "scim")
    assert created.code == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    service = serve(config, run=None)
    service.wait_ready()

    missing = service.get("/scim/v2/Users/no-such-id", headers={"Authorization": f"Bearer {token}"})

    assert missing.status_code == 404
    (refused,) = service.wait_event("scim.request.refused")
    assert refused["status"] == 404 and "not found" in refused["detail"].lower()
    assert all(" " not in event["event"] for event in service.events())
