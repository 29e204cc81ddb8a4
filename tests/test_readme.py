"""The README's commands work as printed, run in a fresh shell against the demo.

Every line of the README's ``sh`` blocks runs in one ``bash`` session (so ``export`` and ``. .venv/bin/activate``
carry on to the next line, as in a terminal), in an empty folder that holds only ``.venv``: a link to the virtualenv
running these tests, standing for the one the README's first command makes (installing it again would take minutes
and the network). The session's PATH is the system's, without syncd, as in a new terminal.

Left out, each for its reason: lines that install (``pip install``, ``sudo``, ``systemctl``, ``bash .ci/run``), since
they change the machine; ``syncd demo`` runs with ``--no-serve`` because it serves until Ctrl-C (serving is tested
in tests/test_demo.py and tests/service/); a line with a placeholder a reader fills in (``PLAN_ID``) is left out,
except ``SEQ:HASH``, filled with the head the previous ``audit verify`` printed. The examples' org ``acme`` is the
demo's ``demo``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

INSTALLS = ("pip install", "sudo ", "systemctl", "bash .ci/run")
PLACEHOLDERS = ("PLAN_ID",)
MARK = "@@README-EXIT"


def readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def runnable(line: str) -> str | None:
    if any(word in line for word in INSTALLS) or any(word in line for word in PLACEHOLDERS):
        return None
    line = line.replace("--org acme", "--org demo").replace("acme.jsonl", "demo.jsonl")
    return re.sub(r"\bsyncd demo\b", "syncd demo --no-serve", line)


def test_the_readme_commands_run_as_printed_against_the_demo(tmp_path):
    venv = Path(sys.executable).parent.parent
    assert (venv / "bin" / "activate").is_file() and (venv / "bin" / "syncd").is_file()
    (tmp_path / ".venv").symlink_to(venv)
    lines = [line for line in map(runnable, readme_lines()) if line]
    assert any(line.startswith(". .venv/bin/activate && syncd demo") for line in lines)
    script = ["set -u"]
    for number, line in enumerate(lines):
        if "SEQ:HASH" in line:
            line = line.replace("SEQ:HASH", '"$HEAD"')
        script.append(line)
        script.append(f'echo "{MARK} {number} $?"')
        if re.match(r"syncd audit verify --org \S+\s", line + " ") and "--expect-head" not in line:
            script.append('HEAD=$(syncd audit verify --org demo | sed -n "s/.*; head //p")')
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PG", "SYNCD_TEST"))})
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert "command not found" not in output and "Traceback" not in output, output
    codes = {int(n): int(c) for n, c in re.findall(rf"^{MARK} (\d+) (\d+)$", done.stdout, flags=re.M)}
    assert sorted(codes) == list(range(len(lines))), output
    for number, line in enumerate(lines):
        allowed = (0, 2, 3) if line.startswith("syncd plan") else (0,)
        assert codes[number] in allowed, f"{line!r} exited {codes[number]}\n{output}"
    assert (tmp_path / ".syncd-demo" / "syncd.toml").is_file() and (tmp_path / "q1.csv").stat().st_size > 0
