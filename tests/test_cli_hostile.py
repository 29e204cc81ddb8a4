"""Every subcommand, found from the argparse parser (so a command added later is covered without editing this file),
run with ``--help`` and with hostile input: missing files, a busy port, bad values, unknown names, a missing config.

Each run must end with a documented exit code (0 ok, 1 error, 2 changes pending, 3 held, 4 incomplete read), print
no traceback, and when it fails say so in exactly one line on stderr that is not the "unexpected error" line kept
for bugs. ``syncd serve`` runs as a subprocess (it blocks signals in the process that runs it); everything else runs
in-process through the same ``main`` the ``syncd`` script calls.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import build_parser
from tests.conftest import PYTHON, ROOT, subprocess_env

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4}
MISSING = "/nonexistent/syncd-test/missing"

# Hostile values by argument name; an argument not listed here gets the generic ones, so new commands are covered.
HOSTILE: dict[str, list[str]] = {
    "org": ["no-such-org", "Bad Slug!", ""],
    "source": ["no-such-source", "hr"],  # hr reads a file that does not exist
    "plan_id": ["no-such-plan", "' OR 1=1 --"],
    "member": ["nobody@acme.com", ""],
    "role": ["king"],
    "slug": ["Bad Slug!", "acme"],  # acme exists already
    "name": [""],
    "domain": ["not a domain", "-.example"],
    "scope": ["root"],
    "expires_in": ["forever", "0d"],
    "id": ["abc", "999999"],
    "since": ["yesterday-ish", "2026-13-45"],
    "until": ["yesterday-ish"],
    "before": ["2999-01-01", "soon"],
    "at": ["yesterday-ish"],
    "last": ["0", "-1", "x"],
    "output": [f"{MISSING}/out.jsonl"],
    "file": [MISSING, "{csv_export}", "{binary_file}"],
    "expect_head": ["5", "x:y"],
    "listen": ["nonsense", "{busy}", "256.1.1.1:80"],
    "dir": ["{a_file}"],
    "status": ["bogus"],
    "format": ["bogus"],
}
GENERIC = ["no-such-thing", "", "-1", "\x1b[2Jescape"]
BASELINE: dict[str, str] = {
    "org": "acme",
    "source": "hr",
    "member": "nobody@acme.com",
    "role": "member",
    "slug": "newco",
    "name": "New Co",
    "scope": "read",
    "id": "999999",
    "before": "2000-01-01",
    "plan_id": "no-such-plan",
}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
        return
    for name, sub in subcommands[0].choices.items():
        yield from leaves(sub, (*path, name))


COMMANDS = dict(leaves(build_parser()))


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction) and a.dest != "help"]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def baseline(path: tuple[str, ...], parser: argparse.ArgumentParser, world: dict[str, str], skip: str) -> list[str]:
    """The command with its required arguments filled in with ordinary values (``skip`` is left to the caller).

    ``demo`` gets its own folder, the busy port (so it never starts serving) and ``--no-serve`` unless the address
    itself is under test.
    """
    argv = list(path)
    for action in arguments(parser):
        if action.dest == skip or not (action.required or (not action.option_strings and action.nargs != "?")):
            continue
        value = BASELINE.get(action.dest, "nope")
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    if path == ("demo",):
        argv += ["--dir", world["demo_dir"]] if skip != "dir" else []
        argv += ["--listen", world["busy"]] if skip != "listen" else []
        argv += ["--no-serve"] if skip not in ("listen",) else []
    elif path[0] in ("sync", "plan") and skip not in ("source", "org"):
        argv.append("hr")
    return argv


def hostile_runs(world: dict[str, str]) -> Iterator[list[str]]:
    for path, parser in COMMANDS.items():
        if path == ("serve",):
            continue
        yield baseline(path, parser, world, skip="")
        for action in arguments(parser):
            if not takes_value(action):
                yield [*baseline(path, parser, world, skip=""), action.option_strings[0]]
                continue
            for value in HOSTILE.get(action.dest, GENERIC):
                value = value.format(**world)
                argv = baseline(path, parser, world, skip=action.dest)
                yield [*argv, action.option_strings[0], value] if action.option_strings else [*argv, value]


def assert_one_line_answer(argv: list[str], code: int, stdout: str, stderr: str) -> None:
    shown = f"syncd {' '.join(argv)!r} -> {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert code in DOCUMENTED_EXIT_CODES, shown
    assert "Traceback" not in stderr and "Traceback" not in stdout, shown
    if code == 1:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("syncd"), shown
        assert "unexpected" not in lines[0], shown


@pytest.fixture
def world(tmp_path, sqlite_url, cli, monkeypatch) -> Iterator[dict[str, str]]:
    """A config with org acme and a file source whose export is missing, a port something else holds, a closed port
    for the service URL, a csv export and a binary file; the config is loaded once so later runs print no notes."""
    with socket.socket() as busy, socket.socket() as closed:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        closed.bind(("127.0.0.1", 0))
        busy_port, closed_port = busy.getsockname()[1], closed.getsockname()[1]
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "{sqlite_url}"\n\n[server]\nlisten = "127.0.0.1:{busy_port}"\n'
            f'public_url = "http://127.0.0.1:{closed_port}"\n\n'
            '[[orgs]]\nslug = "acme"\nname = "Acme"\ndomains = ["acme.com"]\n\n'
            '[[sources]]\nname = "hr"\norg = "acme"\nkind = "file"\npath = "missing.csv"\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("SYNCD_CONFIG", str(config))
        monkeypatch.setenv("SYNCD_ADMIN_TOKEN_FILE", MISSING)
        assert cli("orgs", "list").code == 0
        csv_export = tmp_path / "audit.csv"
        assert cli("audit", "export", "--org", "acme", "--format", "csv", "--output", str(csv_export)).code == 0
        binary = tmp_path / "binary.bin"
        binary.write_bytes(bytes(range(256)))
        a_file = tmp_path / "a-file"
        a_file.write_text("not a folder\n")
        yield {
            "config": str(config),
            "busy": f"127.0.0.1:{busy_port}",
            "csv_export": str(csv_export),
            "binary_file": str(binary),
            "a_file": str(a_file),
            "demo_dir": str(tmp_path / "demo"),
        }


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_subcommand_has_help_that_exits_0(cli, path):
    result = cli(*path, "--help")
    assert result.code == 0 and result.stdout.startswith("usage: syncd") and result.stderr == ""


def test_every_subcommand_answers_hostile_input_in_one_line_with_a_documented_code(cli, world):
    runs = list(hostile_runs(world))
    assert len(runs) > 100
    for argv in runs:
        result = cli(*argv)
        assert_one_line_answer(argv, result.code, result.stdout, result.stderr)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p != ("serve",)], ids=" ".join)
def test_every_subcommand_with_a_missing_config_file_is_one_line(cli, world, path):
    argv = ["--config", MISSING, *baseline(path, COMMANDS[path], world, skip="")]
    result = cli(*argv)
    assert_one_line_answer(argv, result.code, result.stdout, result.stderr)
    if path[:2] != ("audit", "verify") or "--org" in argv:
        assert result.code == 1


def test_sync_remote_with_a_missing_admin_token_file_is_one_line(cli, world):
    result = cli("sync", "hr", "--remote")
    assert result.code == 1 and f"cannot read SYNCD_ADMIN_TOKEN_FILE {MISSING}" in result.stderr
    assert result.stderr.count("\n") == 1


def test_sync_remote_to_a_service_that_is_not_there_is_one_line(cli, world, tmp_path, monkeypatch):
    token = tmp_path / "admin.token"
    token.write_text("syncd_a_not_a_real_token\n")
    monkeypatch.setenv("SYNCD_ADMIN_TOKEN_FILE", str(token))
    result = cli("sync", "hr", "--remote")
    assert result.code == 1 and "cannot reach the service" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("extra", [["--listen", "nonsense"], ["--listen", "{busy}"], []], ids=str)
def test_serve_with_a_bad_or_busy_address_is_one_line(world, extra):
    argv = ["serve", *(value.format(**world) for value in extra)]  # no --listen: the config's, which is busy
    done = subprocess.run(
        [PYTHON, "-m", "syncd", *argv],
        cwd=ROOT,
        env={**subprocess_env(), "SYNCD_CONFIG": world["config"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_answer(argv, done.returncode, done.stdout, done.stderr)
    assert done.returncode == 1


def test_serve_without_a_config_is_one_line(tmp_path):
    env = {k: v for k, v in subprocess_env().items() if k != "SYNCD_CONFIG"}
    done = subprocess.run(
        [PYTHON, "-m", "syncd", "--config", MISSING, "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == []
    assert Path(MISSING).exists() is False
