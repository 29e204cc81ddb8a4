"""Opening the database named by ``database.url``: one code path for SQLite and PostgreSQL.

SQLite gets WAL (readers never block the writer), foreign keys on, and a busy timeout so that concurrent writers
wait instead of failing (https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect

from connectors.interface import ConfigError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "cache_size": -64_000,
}


def open_database(url: str) -> peewee.Database:
    """Connect the models to the database at ``url`` and return it (not yet migrated: see :func:`upgrade`)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        db: peewee.Database = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif scheme in ("postgresql", "postgres"):
        db = connect(url.replace("postgres://", "postgresql://", 1))
    else:
        raise ConfigError(
            f"database.url: unsupported scheme {scheme!r}; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    database.initialize(db)
    return db


def stored_time(value: datetime | str) -> datetime:
    """A time column read with raw SQL: SQLite hands back the text peewee stored, PostgreSQL a datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)
