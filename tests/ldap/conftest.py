"""Fixtures: a real slapd per test session for read-only tests, and a fresh one for each test that changes data."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap import Settings
from tests.ldap.directory import GROUPS, LIMITS, PEOPLE, SYNCD_DN, SYNCD_PASSWORD, seed_ldif
from tests.ldap.slapd import ROOT_DN, ROOT_PASSWORD, Slapd, make_certificates


def start_directory(root: Path, sessionlog: int = 1000, tls: tuple[Path, Path, Path] | None = None) -> Slapd:
    slapd = Slapd(root, sessionlog=sessionlog, limits=LIMITS, tls=tls)
    slapd.load(seed_ldif())
    slapd.start()
    return slapd


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """The seeded directory, shared by tests that only read it."""
    root = Path(tempfile.mkdtemp(prefix="syncd-slapd-"))
    server = start_directory(root)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def tls_slapd() -> Iterator[tuple[Slapd, Path]]:
    """The seeded directory behind TLS (ldaps:// and StartTLS) with a certificate from a throwaway CA."""
    root = Path(tempfile.mkdtemp(prefix="syncd-slapd-tls-"))
    ca, cert, key = make_certificates(root / "pki")
    server = start_directory(root / "slapd", tls=(ca, cert, key))
    try:
        yield server, ca
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A seeded directory of this test's own, for tests that change entries or stop the server."""
    server = start_directory(tmp_path / "slapd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def password_file() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="syncd-ldap-secret-"))
    path = folder / "bind_password"
    path.write_text(SYNCD_PASSWORD + "\n", encoding="utf-8")
    yield path
    path.unlink()
    folder.rmdir()


@pytest.fixture
def settings_for(password_file: Path) -> Callable[..., Settings]:
    """Settings reading ``server`` as the syncd service account, with small pages so paging is exercised."""

    def build(server: Slapd, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "url": server.url,
            "bind_dn": SYNCD_DN,
            "bind_password_file": str(password_file),
            "users_base": PEOPLE,
            "groups_base": GROUPS,
            "page_size": 2,
            "timeout": 10.0,
            "connect_timeout": 3.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def admin() -> Callable[[Slapd], ldap3.Connection]:
    """A root connection to change entries with, closed after the test."""
    opened: list[ldap3.Connection] = []

    def connect(server: Slapd) -> ldap3.Connection:
        connection = ldap3.Connection(server.url, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.unbind()
