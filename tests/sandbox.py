"""Run a command under the seccomp filter a systemd unit's ``SystemCallFilter=`` lines describe.

``python -m tests.sandbox UNIT COMMAND...`` loads the filter into this process and execs COMMAND, which inherits it,
as systemd does before it execs a service (systemd.exec(5), "System Call Filtering"). The filter is built the way
systemd builds it:

- the first ``SystemCallFilter=`` line without ``~`` makes an allow-list, which always includes ``@default``;
  later lines add to it, and ``~`` lines take their calls out of it;
- a call outside the list fails with ``SystemCallErrorNumber=`` (EPERM here) instead of killing the process;
- groups (``@system-service``, ``@resources`` ...) are expanded with ``systemd-analyze syscall-filter``, so the
  groups are those of the systemd installed here.

It uses libseccomp (Debian's ``libseccomp2``, installed by ``.ci/run``) through ctypes, so it needs neither root nor
a running systemd. ``SystemCallArchitectures=`` and the rest of the sandbox are not reproduced: this runs the system
call filter only, which is what decides whether the code may call ``setpriority`` and the like.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000


def service_values(unit: Path, key: str) -> list[str]:
    """The values of ``key`` in the unit's [Service] section, in order."""
    values, section = [], None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and not line.startswith("#") and line.partition("=")[0] == key:
            values.append(line.partition("=")[2])
    return values


def syscall_groups() -> dict[str, list[str]]:
    """Every ``@group`` systemd knows, with its members (calls and nested groups)."""
    text = subprocess.run(["systemd-analyze", "syscall-filter"], check=True, capture_output=True, text=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        if name.startswith("@"):
            calls |= expand(groups[name], groups)
        else:
            calls.add(name)
    return calls


def allowed_calls(unit: Path) -> tuple[set[str], int]:
    """The unit's allow-list and the errno that every other call fails with."""
    groups = syscall_groups()
    allowed: set[str] | None = None
    for value in service_values(unit, "SystemCallFilter"):
        if not value.strip():  # an empty assignment resets the filter
            allowed = None
            continue
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        if allowed is None:
            if deny:
                raise SystemExit(f"{unit}: a deny-list filter is not reproduced here, only an allow-list")
            allowed = expand(["@default"], groups)
        if deny:
            allowed -= expand(names, groups)
        else:
            allowed |= expand(names, groups)
    if allowed is None:
        raise SystemExit(f"{unit}: no SystemCallFilter= lines")
    numbers = service_values(unit, "SystemCallErrorNumber")
    if not numbers:
        raise SystemExit(f"{unit}: without SystemCallErrorNumber= systemd kills the process; not reproduced here")
    number = numbers[-1].strip()
    return allowed, int(number) if number.isdigit() else getattr(errno, number)


def load_filter(allowed: set[str], error_number: int) -> None:
    library = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    library.seccomp_load.argtypes = [ctypes.c_void_p]
    context = library.seccomp_init(SCMP_ACT_ERRNO | error_number)
    if not context:
        raise SystemExit("seccomp_init failed")
    for name in sorted(allowed):
        number = library.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # a call this architecture does not have (e.g. arm_fadvise64_64 on x86-64)
            continue
        library.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0)
    result = library.seccomp_load(context)
    if result != 0:
        raise SystemExit(f"seccomp_load failed: {os.strerror(-result)}")


def main(argv: list[str]) -> int:
    unit, *command = argv
    allowed, error_number = allowed_calls(Path(unit))
    load_filter(allowed, error_number)
    os.execvp(command[0], command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
