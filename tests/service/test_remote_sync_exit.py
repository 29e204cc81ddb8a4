"""``syncd sync SOURCE --remote`` answers with the same exit codes as a local sync, 4 for an incomplete read."""

from __future__ import annotations

from tests.service.conftest import service_config


def test_a_remote_sync_of_an_incomplete_read_exits_4_and_prints_the_problem(serve, tmp_path, cli, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(url, {"hr": "1d"}, folder=tmp_path))
    created = cli("--config", str(config), "tokens", "create", "--org", "acme", "--scope", "admin")
    assert created.code == 0, created.stderr
    (tmp_path / "admin.token").write_text(created.stdout.strip().splitlines()[-1] + "\n")
    service = serve(config, run=None)
    service.wait_ready()
    service.wait_event("source.run.ok")  # the first scheduled read (never run before) holds the lease until done
    (tmp_path / "people.csv").write_text("user_name,email\nada,ada@acme.com\nbob,bob@acme.com,surplus\n")
    client = tmp_path / "client.toml"
    client.write_text(f'[database]\nurl = "{url}"\n\n[server]\npublic_url = "{service.url("")}"\n')
    monkeypatch.setenv("SYNCD_ADMIN_TOKEN_FILE", str(tmp_path / "admin.token"))

    remote = cli("--config", str(client), "sync", "hr", "--remote")

    assert remote.code == 4, (remote.stdout, remote.stderr)
    assert "problem: line 3: 3 fields where the header has 2; row skipped" in remote.stdout
