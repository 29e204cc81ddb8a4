"""Shared fixtures: a migrated store on SQLite or a real PostgreSQL, and the CLI run in-process.

The PostgreSQL server is the one at 127.0.0.1:5432 (trust auth), started by ``.ci/run`` when it is down. Each test
session (each pytest-xdist worker) creates its own database and drops it at the end; tables are emptied between tests.

The suite runs in parallel under pytest-xdist with ``--dist loadgroup`` (the README's test command). Tests that use a
server started once per session and expensive to start go to one worker as one group (:data:`GROUPED_FIXTURES`):
the Samba AD DC (fixed ports 389/636, one per machine) and the 389-DS instance (~10-20 s to create).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import peewee
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Session fixture -> the xdist group of every test that uses it, so one worker starts it (and only one Samba DC runs).
GROUPED_FIXTURES = {"samba_dc": "samba-dc", "ds389": "ds389"}
POSTGRES_ADMIN_URL = os.environ.get("SYNCD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark a test that uses a grouped session fixture with its ``xdist_group`` as it is collected: xdist reads the
    marks in its own ``pytest_collection_modifyitems``, which runs before a conftest's."""
    for fixture, group in GROUPED_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(group))


@contextlib.contextmanager
def postgres_database(prefix: str, options: str = "") -> Iterator[str]:
    """A fresh PostgreSQL database (``CREATE DATABASE ... options``) named after this xdist worker; dropped after."""
    import psycopg2

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{prefix}_{worker}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}" {options}')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from syncd.store import database

        if database.obj is not None and not database.obj.is_closed():
            database.obj.close()
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (this xdist worker), dropped afterwards."""
    with postgres_database("syncd_test") as url:
        yield url


def _empty_tables(db: peewee.Database) -> None:
    from syncd.store.models import ALL_MODELS

    tables = [m._meta.table_name for m in ALL_MODELS]
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    else:
        with db.atomic():
            for model in reversed(ALL_MODELS):
                model.delete().execute()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL, once for SQLite (a temp file) and once for the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'syncd.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'syncd.db'}"


@pytest.fixture
def store(database_url: str) -> Iterator[peewee.Database]:
    """A migrated, empty store on each backend; closed after the test."""
    from syncd.store import open_database, upgrade

    db = open_database(database_url)
    upgrade()
    _empty_tables(db)
    yield db
    db.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[peewee.Database]:
    from syncd.store import open_database, upgrade

    db = open_database(sqlite_url)
    upgrade()
    yield db
    db.close()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a TOML config into the test's temp dir and return its path."""

    def write(text: str, name: str = "syncd.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run ``syncd ARGS`` in-process; returns exit code, stdout and stderr."""
    from syncd.cli import main

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m syncd`` subprocesses that import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable
