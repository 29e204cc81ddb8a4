"""``syncd demo``: the README's first command sets up a working org from the HR file and prints how to use it."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
from pathlib import Path

from syncd import config as config_module
from syncd.admin import tokens
from syncd.clock import utcnow
from syncd.store.models import Member
from syncd.sync import orgs


def test_demo_sets_up_members_token_and_ledger_and_reruns_cleanly(cli, tmp_path):
    folder = tmp_path / "demo"
    first = cli("demo", "--dir", str(folder), "--no-serve")
    assert first.code == 0, first.stderr
    token = next(line.split()[2] for line in first.stdout.splitlines() if line.startswith("SCIM token:"))
    assert tokens.authenticate(token) is not None
    assert "/scim/v2" not in first.stdout and "Serving on" not in first.stdout  # --no-serve: nothing is served

    config = str(folder / "syncd.toml")
    members = json.loads(cli("--config", config, "members", "list", "--org", "demo", "--format", "json").stdout)
    roles = {m["email"]: m["role"] for m in members}
    assert roles["ada@demo.example"] == "owner"
    assert roles["grace@demo.example"] == "admin"
    assert roles["tim@partner.example"] == "guest"
    assert "dennis@demo.example" not in roles  # inactive in the HR export: never joins

    again = cli("demo", "--dir", str(folder), "--no-serve")
    assert again.code == 0, again.stderr
    assert f"SCIM token:     {token}" in again.stdout
    assert "0 changes applied" in again.stdout
    assert cli("--config", config, "audit", "verify", "--org", "demo").code == 0


def test_demo_counts_the_active_members_of_the_demo_org_only(cli, tmp_path):
    """The first line says how many active members org 'demo' has; another org in the same store does not count
    (it counted every org's active members before)."""
    folder = tmp_path / "demo"
    assert cli("demo", "--dir", str(folder), "--no-serve").code == 0
    config = str(folder / "syncd.toml")
    assert cli("--config", config, "orgs", "create", "other", "--name", "Other").code == 0
    now = utcnow()
    Member.create(
        org=orgs.get("other"), match_key="x@other.example", email="x@other.example", created_at=now, updated_at=now
    )
    members = json.loads(cli("--config", config, "members", "list", "--org", "demo", "--format", "json").stdout)
    active = sum(1 for m in members if m["status"] == "active")
    again = cli("demo", "--dir", str(folder), "--no-serve")
    assert again.code == 0, again.stderr
    assert f"org 'demo' has {active} active members from" in again.stdout


def test_demo_refuses_a_config_of_its_own(cli, tmp_path):
    result = cli("--config", str(tmp_path / "x.toml"), "demo", "--no-serve", "--dir", str(tmp_path / "d"))
    assert result.code == 1 and "drop --config" in result.stderr


def test_members_list_at_answers_for_a_past_moment_from_the_ledger(cli, tmp_path):
    from syncd.clock import iso, utcnow

    folder = tmp_path / "demo"
    assert cli("demo", "--dir", str(folder), "--no-serve").code == 0
    between = iso(utcnow())
    people = folder / "people.csv"
    people.write_text(people.read_text().replace("IT Admins;Leadership", "Leadership"), encoding="utf-8")
    config = str(folder / "syncd.toml")
    assert cli("--config", config, "sync", "hr").code == 0

    def roles(*extra: str) -> dict[str, str]:
        listed = cli("--config", config, "members", "list", "--org", "demo", "--format", "json", *extra)
        assert listed.code == 0, listed.stderr
        return {m["email"]: m["role"] for m in json.loads(listed.stdout)}

    assert roles()["grace@demo.example"] == "member"
    assert roles("--at", between)["grace@demo.example"] == "admin"
    assert cli("--config", config, "members", "list", "--org", "demo", "--at", "yesterday-ish").code == 1


def test_demo_with_its_port_taken_is_one_line_before_anything_is_set_up(cli, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("demo", "--dir", str(tmp_path / "demo"), "--listen", f"127.0.0.1:{port}")
    assert result.code == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and f"--listen 127.0.0.1:{port}: cannot listen" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_demo_with_its_metrics_port_taken_is_one_line_before_anything_is_set_up(cli, tmp_path):
    """The /metrics listener (127.0.0.1:9464 by default) is checked with the SCIM one: before, a taken metrics port
    was found only after the first sync and the 'Serving on' line had been printed."""
    with socket.socket() as free, socket.socket() as taken:
        free.bind(("127.0.0.1", 0))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen, metrics = free.getsockname()[1], taken.getsockname()[1]
        free.close()
        result = cli(
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--listen",
            f"127.0.0.1:{listen}",
            "--metrics-listen",
            f"127.0.0.1:{metrics}",
        )
    assert result.code == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and f"--metrics-listen 127.0.0.1:{metrics}: cannot listen" in result.stderr
    assert "choose another with --metrics-listen" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_listen_address_that_is_not_one_before_serving(cli, tmp_path):
    result = cli("demo", "--dir", str(tmp_path / "demo"), "--listen", "nonsense")
    assert result.code == 1 and "Serving on" not in result.stdout and result.stdout == ""
    assert "--listen: expected HOST:PORT" in result.stderr and not (tmp_path / "demo").exists()


def test_demo_schedule_leaves_time_to_plan_an_edit_before_it_is_applied(cli, tmp_path):
    folder = tmp_path / "demo"
    assert cli("demo", "--dir", str(folder), "--no-serve").code == 0
    (source,) = config_module.load(folder / "syncd.toml").sources
    assert config_module.parse_interval(source.schedule, "schedule") >= 3600


def test_demo_next_steps_are_commands_this_shell_can_run(cli, tmp_path):
    result = cli("demo", "--dir", str(tmp_path / "demo"), "--no-serve")
    steps = [line.strip() for line in result.stdout.split("Try next:")[1].splitlines() if line.strip()]
    commands = [shlex.split(step.split("   #")[0]) for step in steps if not step.startswith(("#", "export"))]
    assert len(commands) >= 6
    for command in commands:
        program = command[0]
        assert shutil.which(program) is not None or Path(program).is_file(), program
        assert command[1] in ("members", "audit", "plan", "sync", "serve", "-m")


def test_members_list_at_now_prints_the_live_list_in_its_shape_and_order(cli, tmp_path):
    """One members document: ``--at`` a moment after the last change prints what the live list prints, key for key
    and in the same order (only ``sources``, which the ledger does not record, may be empty)."""
    from syncd.clock import iso, utcnow

    folder = tmp_path / "demo"
    assert cli("demo", "--dir", str(folder), "--no-serve").code == 0
    config = str(folder / "syncd.toml")
    # An email in capitals sorts before lower case by code point but after them folded: one order for both.
    people = folder / "people.csv"
    people.write_text(
        people.read_text(encoding="utf-8") + "1901,Zed@demo.example,Zed,Zed,IT,Engineer,1001,Leadership,true\n",
        encoding="utf-8",
    )
    assert cli("--config", config, "sync", "hr").code == 0

    def listed(*extra: str) -> list[dict]:
        result = cli("--config", config, "members", "list", "--org", "demo", "--format", "json", *extra)
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)

    live = listed()
    past = listed("--at", iso(utcnow()))
    assert len(live) > 3
    assert [list(m) for m in past] == [list(m) for m in live]
    assert [{**m, "sources": []} for m in past] == [{**m, "sources": []} for m in live]
