"""A real OpenLDAP slapd in a temporary directory, for the LDAP tests and the benchmark.

The configuration follows docs/architecture.md ("Peers"): schemas core, cosine, inetorgperson, nis and dyngroup;
``back_mdb`` with the ``syncprov`` overlay keeping a session log (so syncrepl refreshes report deletes, RFC 4533
§3.3.2), ``memberof`` (memberOf on people), ``refint`` (a rename or delete rewrites ``member``, ``uniqueMember`` and
``manager`` values, as a real directory's would — in a background task, and without a new entryCSN, so syncrepl
does not redeliver the groups; keys make that harmless), and ``ppolicy`` for the
``pwdAccountLockedTime`` attribute. It is checked with ``slaptest`` before starting.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPTEST = "/usr/sbin/slaptest"
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-do-not-log"

_CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/dyngroup.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload syncprov
moduleload ppolicy
moduleload refint
pidfile {root}/slapd.pid
{tls}
database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {root}/db
maxsize 4294967296
index objectClass,uid,entryUUID,entryCSN,memberUid eq
{limits}
overlay syncprov
syncprov-checkpoint 100 1
syncprov-sessionlog {sessionlog}
overlay memberof
memberof-refint TRUE
overlay refint
refint_attributes member uniqueMember manager
overlay ppolicy
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Slapd:
    """One slapd process listening on a free loopback port, with its database under ``root``."""

    def __init__(
        self, root: Path, *, sessionlog: int = 1000, limits: str = "", tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        """``tls`` is (CA certificate, server certificate, server key): slapd then also listens on ldaps://."""
        self.root = root
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls_port = free_port() if tls else None
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else None
        tls_lines = ""
        if tls:
            ca, cert, key = tls
            tls_lines = f"TLSCACertificateFile {ca}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}"
        self.config = root / "slapd.conf"
        self.process: subprocess.Popen[bytes] | None = None
        (root / "db").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            _CONFIG.format(
                root=root,
                suffix=SUFFIX,
                root_dn=ROOT_DN,
                root_password=ROOT_PASSWORD,
                sessionlog=sessionlog,
                limits=limits,
                tls=tls_lines,
            ),
            encoding="utf-8",
        )
        subprocess.run([SLAPTEST, "-Q", "-u", "-f", str(self.config)], check=True)

    def load(self, ldif: str | Path) -> None:
        """Load LDIF offline with ``slapadd -q`` (much faster than ldapadd; slapd must be stopped)."""
        path = Path(ldif) if isinstance(ldif, Path) else self.root / "load.ldif"
        if not isinstance(ldif, Path):
            path.write_text(ldif, encoding="utf-8")
        subprocess.run([SLAPADD, "-q", "-f", str(self.config), "-l", str(path)], check=True, capture_output=True)

    def start(self) -> None:
        listen = f"{self.url}/ {self.ldaps_url}/" if self.ldaps_url else f"{self.url}/"
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", listen, "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}; config {self.config}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"slapd did not listen on {self.url} within 10 s")

    def kill(self) -> None:
        """Kill slapd at once (SIGKILL), as a crash or a pulled cable would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def freeze(self) -> None:
        """Stop slapd (SIGSTOP) and wait until the kernel reports it stopped: it then answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        for _ in range(500):
            state = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
            if state == "T":
                return
            time.sleep(0.01)
        raise RuntimeError("slapd did not stop within 5 s of SIGSTOP")

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl), for TLS tests."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, request, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=syncd test CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    run(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    key.chmod(0o644)
    return ca, cert, key


def peak_rss_kib(pid: int | None = None) -> int:
    """Peak resident set size (VmHWM) of a process, in KiB, from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text(encoding="utf-8")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("VmHWM not in /proc status")
