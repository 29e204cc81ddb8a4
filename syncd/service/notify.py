"""The systemd notification protocol over a plain unix datagram socket (sd_notify(3); no libsystemd needed).

``$NOTIFY_SOCKET`` names the socket (a leading ``@`` means the Linux abstract namespace); without it every call is a
no-op, so the same binary runs under systemd, in a container or in a terminal. The watchdog interval comes from
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, when set, must be this process), see sd_watchdog_enabled(3).
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send ``READY=1``, ``STOPPING=1``, ``RELOADING=1``, ``WATCHDOG=1``, ``STATUS=...``; False without systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not states:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(states).encode("utf-8"))
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the configured timeout, as sd_watchdog_enabled(3) advises)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
