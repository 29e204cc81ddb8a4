"""A real 389 Directory Server instance in a temporary directory, made by ``dscreate from-file``.

How (Debian 389-ds-base 2.3, root in a container without systemd): lib389 reads its default paths from
``$PREFIX/share/dirsrv/inf/defaults.inf`` when ``PREFIX`` is set (the mechanism behind ``dscreate ds-root`` for
non-root installs). The fixture writes such a file with ``with_systemd = 0`` and every writable path (config,
database, logs, locks, pid file, LDAPI socket) under its temporary root, so ``dscreate`` starts ``ns-slapd``
directly instead of calling ``systemctl``, nothing is written under /etc or /var, and ``dsctl NAME remove --do-it``
(with the same ``PREFIX``) stops and removes it. The server runs as the user running the tests, on free ports of
127.0.0.1 chosen at run time. It works as root and as a plain user
(checked as ``nobody``). Creating an instance takes about 9 s, so tests share one per session.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import ldap3

from tests.ldap.slapd import free_port

DSCREATE = "/usr/sbin/dscreate"
DSCTL = "/usr/sbin/dsctl"
ROOT_DN = "cn=Directory Manager"
ROOT_PASSWORD = "ds389-root-secret-do-not-log"

_DEFAULTS = """\
[slapd]
product = 389 Directory Server
version = {version}
asan_enabled = 0
with_systemd = 0
with_selinux = no
prefix = {root}
bin_dir = /usr/bin
sbin_dir = /usr/sbin
lib_dir = {lib_dir}
data_dir = /usr/share
tmp_dir = {root}/tmp
sysconf_dir = {root}/etc
initconfig_dir = {root}/etc/default
config_dir = {root}/etc/dirsrv/slapd-{{instance_name}}
local_state_dir = {root}/var
run_dir = {root}/run
ldapi = {root}/run/slapd-{{instance_name}}.socket
pid_file = {root}/run/slapd-{{instance_name}}.pid
ldapi_listen = on
ldapi_autobind = on
inst_dir = {lib_dir}/dirsrv/slapd-{{instance_name}}
plugin_dir = {lib_dir}/dirsrv/plugins
system_schema_dir = /usr/share/dirsrv/schema
tmpfiles_d = {root}/etc/tmpfiles.d
user = {user}
group = {group}
root_dn = {root_dn}
schema_dir = {root}/etc/dirsrv/slapd-{{instance_name}}/schema
cert_dir = {root}/etc/dirsrv/slapd-{{instance_name}}
lock_dir = {root}/lock/slapd-{{instance_name}}
log_dir = {root}/log/slapd-{{instance_name}}
access_log = {root}/log/slapd-{{instance_name}}/access
audit_log = {root}/log/slapd-{{instance_name}}/audit
error_log = {root}/log/slapd-{{instance_name}}/errors
security_log = {root}/log/slapd-{{instance_name}}/security
db_dir = {root}/db/slapd-{{instance_name}}/db
db_home_dir = {root}/db/slapd-{{instance_name}}/db
backup_dir = {root}/db/slapd-{{instance_name}}/bak
ldif_dir = {root}/db/slapd-{{instance_name}}/ldif
"""

_INSTANCE = """\
[general]
full_machine_name = localhost
start = True
systemd = False
selinux = False
strict_host_checking = False

[slapd]
instance_name = {name}
port = {port}
secure_port = {secure_port}
self_sign_cert = False
root_password = {password}

[backend-userroot]
suffix = {suffix}
create_suffix_entry = True
"""


#: What dscreate copies from /etc/dirsrv into an instance, as minimal files for a user who may not read it.
_SYSCONF = {
    "schema": {"99user.ldif": "dn: cn=schema\n"},
    "config": {"certmap.conf": "certmap default default\n", "slapd-collations.conf": ""},
}


def _system_defaults() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in Path("/usr/share/dirsrv/inf/defaults.inf").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(";"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class Ds389:
    """One 389-DS instance under ``root``, listening on a free port of 127.0.0.1."""

    def __init__(self, root: Path, suffix: str, name: str | None = None) -> None:
        self.root = root
        self.suffix = suffix
        self.name = name or f"syncd{os.getpid()}x{free_port()}"
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PREFIX": str(root)}

    def create(self) -> None:
        """Lay out the prefix root and run ``dscreate from-file`` (which starts the server)."""
        system = _system_defaults()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "share/dirsrv/inf").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        for folder, files in _SYSCONF.items():
            target = self.root / "etc/dirsrv" / folder
            if os.access(f"/etc/dirsrv/{folder}", os.R_OK | os.X_OK):
                shutil.copytree(f"/etc/dirsrv/{folder}", target, dirs_exist_ok=True)
                continue
            target.mkdir(parents=True, exist_ok=True)  # /etc/dirsrv is dirsrv's alone: minimal stand-ins
            for name, text in files.items():
                (target / name).write_text(text, encoding="utf-8")
        (self.root / "share/dirsrv/inf/defaults.inf").write_text(
            _DEFAULTS.format(
                root=self.root,
                version=system.get("version", "2.3"),
                lib_dir=system.get("lib_dir", "/usr/lib"),
                user=pwd.getpwuid(os.getuid()).pw_name,
                group=grp.getgrgid(os.getgid()).gr_name,
                root_dn=ROOT_DN,
            ),
            encoding="utf-8",
        )
        answers = self.root / "instance.inf"
        answers.write_text(
            _INSTANCE.format(
                name=self.name, port=self.port, secure_port=free_port(), password=ROOT_PASSWORD, suffix=self.suffix
            ),
            encoding="utf-8",
        )
        answers.chmod(0o600)
        self._run(DSCREATE, "from-file", str(answers))
        self.wait()

    def _run(self, *args: str) -> None:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def wait(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.admin().unbind()
                return
            except ldap3.core.exceptions.LDAPException:
                time.sleep(0.1)
        raise RuntimeError(f"389-DS {self.name} did not answer on {self.url} within {seconds} s")

    def restart(self) -> None:
        """Restart (plugin changes take effect only then)."""
        self._run(DSCTL, self.name, "restart")
        self.wait()

    def dsidm(self, *args: str) -> None:
        """Run ``dsidm`` against the instance as Directory Manager (over LDAP, so any user may)."""
        self._run("/usr/sbin/dsidm", "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-b", self.suffix, self.url, *args)

    def admin(self) -> ldap3.Connection:
        """A Directory Manager connection; the caller unbinds it."""
        server = ldap3.Server(self.url, get_info=ldap3.NONE)
        return ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)

    def remove(self) -> None:
        """``dsctl NAME remove --do-it`` stops the server and deletes the instance; then the root goes. If dsctl
        cannot (a half-made instance), the server is stopped by its pid file, so no ns-slapd outlives the tests."""
        try:
            self._run(DSCTL, self.name, "remove", "--do-it")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill()
            raise
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill(self) -> None:
        pid_file = self.root / f"run/slapd-{self.name}.pid"
        try:
            pid = int(pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
