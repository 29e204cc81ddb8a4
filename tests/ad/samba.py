"""A real Samba AD domain controller in a temporary directory, for the Active Directory tests and the benchmark.

Provisioned offline (``samba-tool domain provision``, no DNS, loopback only), loaded offline with ``ldbadd``
straight into ``private/sam.ldb`` (the DSDB modules still run: SIDs, GUIDs, USNs and linked attributes are made as a
DC makes them), then started as ``samba -i`` with only the LDAP service. Samba's own self-signed certificate names
the host (``VM.syncd.test``), so the DC is given a certificate for 127.0.0.1 from a throwaway CA instead, which the
tests hand to syncd as ``ca_file``.

Samba serves LDAP on the fixed ports 389 and 636 (it has no setting for others), so only one DC runs at a time on a
machine: a DC holds an exclusive lock on :data:`MACHINE_LOCK` from its first start until it is removed, and another
test session (or pytest-xdist worker, or the benchmark) waits for it instead of finding the ports taken. A pristine copy of the loaded directory is kept beside it, so a test that changes the directory can put it
back (:meth:`SambaDC.restore`) in a few seconds instead of provisioning again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ldap3

from tests.ldap.slapd import make_certificates

REALM = "SYNCD.TEST"
DOMAIN_DN = "DC=syncd,DC=test"
STAFF = f"OU=Staff,{DOMAIN_DN}"
GROUPS = f"OU=Groups,{DOMAIN_DN}"
LEAVERS = f"OU=Leavers,{DOMAIN_DN}"
ADMIN = "Administrator@syncd.test"
ADMIN_PASSWORD = "Passw0rd!Judge"
#: A plain domain user: what admins actually give a sync tool.
READER = "syncreader@syncd.test"
#: A plain domain user granted "Replicating Directory Changes" on the domain (DirSync without admin rights).
REPLICATOR = "syncdirsync@syncd.test"
SERVICE_PASSWORD = "Reader!Pass123"

#: Held (``flock``) by the one DC of the machine; the kernel drops it when its holder dies, so it never goes stale.
MACHINE_LOCK = Path(tempfile.gettempdir()) / "syncd-samba-dc.lock"
#: How long a DC waits for another session's DC to be removed before giving up.
LOCK_WAIT_SECONDS = 900.0

DEPARTMENTS = 20
BIG_MEMBERS = 1700  # above AD's MaxValRange (1500): the group real AD returns in member;range= slices


def user_dn(number: int, parent: str = STAFF) -> str:
    return f"CN=User {number:05d},{parent}"


def group_dn(name: str) -> str:
    return f"CN={name},{GROUPS}"


def department_of(number: int) -> int:
    return number % DEPARTMENTS


def disabled_at_load(number: int) -> bool:
    return number % 50 == 7


def employee_number(number: int) -> str:
    return f"N{number:05d}" if number % 7 == 0 else f"E{number:05d}"


@dataclass
class Layout:
    """What the generated directory holds, so tests can say what the rules imply without reading it back.

    Groups: ``Dept NN`` (users by number mod 20), ``Division A`` holds Dept 00-09 and ``Division B`` Dept 10-19
    (nested), ``Everyone`` holds both divisions (two levels of nesting), ``Big`` holds users 0-1699 directly, and
    ``IT Admins`` holds ``Dept 03``. Every 50th user (number ≡ 7 mod 50) is disabled; every 7th has an
    ``employeeNumber`` and no ``employeeID``, the others an ``employeeID``.
    """

    users: int
    groups: dict[str, set[str]] = field(default_factory=dict)


def layout(users: int, teams: int = 0) -> Layout:
    """The groups for ``users`` people; ``teams`` more groups of 50 direct members each (for the benchmark)."""
    plan = Layout(users)
    for team in range(teams):
        plan.groups[f"Team {team:05d}"] = {user_dn((team * 50 + m) % users) for m in range(50)}
    for dept in range(DEPARTMENTS):
        plan.groups[f"Dept {dept:02d}"] = {user_dn(n) for n in range(users) if department_of(n) == dept}
    plan.groups["Division A"] = {group_dn(f"Dept {d:02d}") for d in range(0, DEPARTMENTS // 2)}
    plan.groups["Division B"] = {group_dn(f"Dept {d:02d}") for d in range(DEPARTMENTS // 2, DEPARTMENTS)}
    plan.groups["Everyone"] = {group_dn("Division A"), group_dn("Division B")}
    plan.groups["Big"] = {user_dn(n) for n in range(min(users, BIG_MEMBERS))}
    plan.groups["IT Admins"] = {group_dn("Dept 03")}
    return plan


def user_ldif(number: int, parent: str = STAFF) -> str:
    lines = [
        f"dn: {user_dn(number, parent)}",
        "objectClass: user",
        f"sAMAccountName: u{number:05d}",
        f"userPrincipalName: u{number:05d}@syncd.test",
        f"mail: u{number:05d}@example.com",
        "givenName: User",
        f"sn: N{number:05d}",
        f"displayName: User {number:05d}",
        f"userAccountControl: {514 if disabled_at_load(number) else 512}",
    ]
    lines.append(f"employeeNumber: N{number:05d}" if number % 7 == 0 else f"employeeID: E{number:05d}")
    return "\n".join(lines) + "\n"


def directory_ldif(plan: Layout) -> str:
    """The generated directory as LDIF for ``ldbadd`` (groups after the members they name)."""
    parts = [f"dn: {ou}\nobjectClass: organizationalUnit\n" for ou in (STAFF, GROUPS, LEAVERS)]
    parts.extend(user_ldif(n) for n in range(plan.users))
    order = [f"Dept {d:02d}" for d in range(DEPARTMENTS)] + ["Division A", "Division B", "Everyone", "Big", "IT Admins"]
    order += sorted(name for name in plan.groups if name.startswith("Team "))
    for name in order:
        members = "".join(f"member: {dn}\n" for dn in sorted(plan.groups[name]))
        parts.append(f"dn: {group_dn(name)}\nobjectClass: group\nsAMAccountName: {name.replace(' ', '-')}\n{members}")
    parts.append(f"dn: CN=Gone Before,{STAFF}\nobjectClass: user\nsAMAccountName: gonebefore\n")
    return "\n".join(parts)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _stop_orphaned_dcs() -> None:
    """Stop Samba DCs that an earlier test session started and left behind when it was killed.

    The fixture always stops its DC; a ``samba`` whose standard error is a ``syncd-samba-`` test log and whose parent
    is gone (adopted by init, parent pid 1) belongs to no live session. (Samba rewrites its command line to "samba:
    root process", so the log it writes to is what names it.) A DC of a live session is left alone.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            log = os.readlink(proc / "fd" / "2")
        except (OSError, ValueError, IndexError):
            continue
        if parent == 1 and name == "samba" and "syncd-samba-" in log:
            try:
                os.kill(int(proc.name), signal.SIGTERM)
            except ProcessLookupError:
                continue


class SambaDC:
    """One Samba AD DC serving ldap://127.0.0.1 and ldaps://127.0.0.1 from ``root``."""

    url = "ldap://127.0.0.1"
    ldaps_url = "ldaps://127.0.0.1"

    def __init__(self, root: Path, users: int = 3000, teams: int = 0) -> None:
        self.root = root
        self.plan = layout(users, teams)
        self.process: subprocess.Popen[bytes] | None = None
        self.lock: int | None = None
        self.ca, self.cert, self.key = make_certificates(root / "pki")
        self.key.chmod(0o600)  # Samba refuses a key others may read (CVE-2013-4476)
        self.domain = root / "dc"
        self.pristine = root / "pristine"
        self.reader_password_file = root / "reader.secret"
        self.reader_password_file.write_text(SERVICE_PASSWORD + "\n", encoding="utf-8")

    # -- setting up ---------------------------------------------------------------------------------------------

    def provision(self) -> None:
        """Provision the domain, load the generated directory and the service accounts, keep a pristine copy."""
        self.domain.mkdir(parents=True)
        self._run(
            "samba-tool",
            "domain",
            "provision",
            f"--targetdir={self.domain}",
            f"--realm={REALM}",
            "--domain=SYNCD",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--adminpass={ADMIN_PASSWORD}",
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
        )
        ldif = self.root / "directory.ldif"
        ldif.write_text(directory_ldif(self.plan), encoding="utf-8")
        sam = str(self.domain / "private" / "sam.ldb")
        self._run("ldbadd", "--nosync", "-H", sam, str(ldif))
        # A user deleted before the first sync: a tombstone under CN=Deleted Objects, never a member.
        self._run("ldbdel", "-H", sam, f"CN=Gone Before,{STAFF}")
        for account in (READER, REPLICATOR):
            self._run("samba-tool", "user", "create", account.split("@")[0], SERVICE_PASSWORD, "-H", sam)
        replicator_dn = f"CN={REPLICATOR.split('@')[0]},CN=Users,{DOMAIN_DN}"
        self._run(
            "samba-tool",
            "dsacl",
            "set",
            "-H",
            sam,
            "--car=get-changes",
            "--action=allow",
            f"--objectdn={DOMAIN_DN}",
            f"--trusteedn={replicator_dn}",
        )
        shutil.copytree(self.domain, self.pristine, symlinks=True)

    def _run(self, *command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} {command[1]} failed: {done.stderr.strip()[-500:]}")

    # -- running ------------------------------------------------------------------------------------------------

    def _take_machine_lock(self) -> None:
        """Wait until no other DC of this machine exists (see :data:`MACHINE_LOCK`), then hold the lock."""
        if self.lock is not None:
            return
        handle = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(handle)
                    raise RuntimeError(
                        f"another Samba DC of this machine held {MACHINE_LOCK} for {LOCK_WAIT_SECONDS:.0f} s"
                    ) from None
                time.sleep(0.5)
                continue
            self.lock = handle
            return

    def _release_machine_lock(self) -> None:
        if self.lock is not None:
            os.close(self.lock)  # closing the only descriptor releases the flock
            self.lock = None

    def start(self) -> None:
        self._take_machine_lock()
        if _port_open(389) or _port_open(636):
            _stop_orphaned_dcs()
            deadline = time.monotonic() + 20
            while (_port_open(389) or _port_open(636)) and time.monotonic() < deadline:
                time.sleep(0.1)  # a stopped DC's prefork children close their listeners after it
        if _port_open(389) or _port_open(636):
            raise RuntimeError("ports 389/636 are taken: another Samba DC (or LDAP server) is running here")
        self.process = subprocess.Popen(
            [
                "samba",
                "-i",
                "-s",
                str(self.domain / "etc" / "smb.conf"),
                "--option=server services=ldap",
                "--option=ldap server require strong auth=no",
                f"--option=tls keyfile={self.key}",
                f"--option=tls certfile={self.cert}",
                f"--option=tls cafile={self.ca}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "samba.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"samba exited with {self.process.returncode}; see {self.root / 'samba.log'}")
            if _port_open(636):
                return
            time.sleep(0.1)
        raise RuntimeError("samba did not listen on 636 within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        deadline = time.monotonic() + 10
        while (_port_open(389) or _port_open(636)) and time.monotonic() < deadline:
            time.sleep(0.05)  # samba's prefork children close their listeners after the parent

    def restore(self) -> None:
        """Put the directory back as loaded: stop, copy the pristine databases back, start."""
        self.stop()
        shutil.rmtree(self.domain)
        shutil.copytree(self.pristine, self.domain, symlinks=True)
        self.start()

    def remove(self) -> None:
        self.stop()
        self._release_machine_lock()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- changing entries ---------------------------------------------------------------------------------------

    def admin(self) -> ldap3.Connection:
        """An Administrator connection over LDAPS (raises on any failed operation)."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca))
        server = ldap3.Server(self.ldaps_url, tls=tls, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True, auto_range=False)


def started(root: Path, users: int = 3000) -> Iterator[SambaDC]:
    dc = SambaDC(root, users)
    try:
        dc.provision()
        dc.start()
        yield dc
    finally:
        dc.remove()
