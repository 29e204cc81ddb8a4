"""What a person sees in a terminal: progress on stderr only when it is a terminal, its line closed before the
result, and a final line for a command whose output went to a file.

The terminal is a real pseudo-terminal (``pty``) holding both stdout and stderr of a ``python -m syncd`` process, as
an interactive shell would.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, ROOT, subprocess_env


def in_terminal(*argv: str) -> str:
    """Run ``syncd ARGV`` with stdout and stderr on one pseudo-terminal; return what the terminal received."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [PYTHON, "-m", "syncd", *argv],
        cwd=ROOT,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    received = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not chunk:
            break
        received += chunk
    process.wait(60)
    os.close(primary)
    return received.decode("utf-8", errors="replace")


def edited_demo(cli, tmp_path: Path) -> Path:
    """The demo set up, then one person removed from its HR export: the next sync has changes to apply."""
    folder = tmp_path / "demo"
    assert cli("demo", "--dir", str(folder), "--no-serve").code == 0
    people = folder / "people.csv"
    lines = people.read_text(encoding="utf-8").splitlines(keepends=True)
    people.write_text("".join(line for line in lines if "linus@" not in line), encoding="utf-8")
    return folder / "syncd.toml"


def test_the_progress_line_is_closed_before_the_sync_result_in_a_terminal(cli, tmp_path):
    config = edited_demo(cli, tmp_path)
    shown = in_terminal("--config", str(config), "sync", "hr")
    assert re.search(r"applying: (\d+)/\1", shown), shown
    assert re.search(r"applying: \d+/\d+\r?\nsource hr: \d+ changes? applied", shown), shown


def test_a_sync_in_a_pipe_shows_no_progress(cli, tmp_path):
    config = edited_demo(cli, tmp_path)
    done = subprocess.run(
        [PYTHON, "-m", "syncd", "--config", str(config), "sync", "hr"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "" and "applying" not in done.stdout


def test_audit_export_to_a_file_ends_with_a_line_saying_what_was_written(cli, tmp_path):
    config = edited_demo(cli, tmp_path)
    target = tmp_path / "audit.jsonl"
    result = cli("--config", str(config), "audit", "export", "--org", "demo", "--output", str(target))
    count = len(target.read_text(encoding="utf-8").splitlines())
    assert result.code == 0 and result.stdout == ""
    assert result.stderr == f"audit export: {count} entries of org demo written to {target}\n"
