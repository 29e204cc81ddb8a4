"""Opening the database named by ``database.url``: one code path for SQLite and PostgreSQL.

SQLite gets WAL (readers never block the writer), foreign keys on, and a busy timeout so that concurrent writers
wait instead of failing (https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html). In ``syncd serve``
the connections leave the WAL checkpoint to one background thread (``background_checkpoints``; docs/architecture.md,
"SQL and the two databases") instead of the committing connection running it when the WAL passes 1,000 pages
(https://www.sqlite.org/wal.html#automatic_checkpoint); the commands run alone keep SQLite's automatic checkpoint.
"""

from __future__ import annotations

from urllib.parse import urlparse, urlsplit, urlunsplit

import peewee
from playhouse.db_url import connect

from syncd.common.errors import ConfigError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
    "cache_size": -64_000,
}
BACKGROUND_CHECKPOINT_PRAGMAS = {**SQLITE_PRAGMAS, "wal_autocheckpoint": 0}
"""The pragmas of a connection of ``syncd serve``: no commit copies the WAL into the database, the checkpointer does
(https://www.sqlite.org/pragma.html#pragma_wal_autocheckpoint)."""


def open_database(url: str, *, background_checkpoints: bool = False) -> peewee.Database:
    """Connect the models to the database at ``url`` and return it (not yet migrated: see :func:`upgrade`).

    ``background_checkpoints``: SQLite connections do not checkpoint the WAL when they commit, for a process of
    ``syncd serve``, whose checkpointer thread does it (nothing changes on PostgreSQL)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        pragmas = BACKGROUND_CHECKPOINT_PRAGMAS if background_checkpoints else SQLITE_PRAGMAS
        db: peewee.Database = connect(url, pragmas=pragmas, check_same_thread=False)
    elif scheme in ("postgresql", "postgres"):
        db = connect(url.replace("postgres://", "postgresql://", 1))
    else:
        raise ConfigError(
            f"database.url: unsupported scheme {scheme!r}; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    database.initialize(db)
    return db


UNREACHABLE: tuple[type[Exception], ...] = (peewee.OperationalError, peewee.InterfaceError)
"""What the driver raises when the database cannot be opened or does not answer (:func:`unavailable` words it)."""


class StoreUnavailable(Exception):
    """The database cannot be opened or reached; the message names it (never its password) and what to check."""


def describe(url: str) -> str:
    """``database.url`` as safe to print: the password, if any, is left out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def unavailable(error: Exception, url: str | None = None) -> StoreUnavailable:
    """One line for a database that failed to open or answer: which one, the driver's first line, what to check."""
    where = describe(url) if url else _current_url()
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if where.startswith("sqlite"):
        hint = "check that the folder exists and is writable by this user"
    else:
        hint = "check that PostgreSQL is running and reachable there, and the user, database and password"
    return StoreUnavailable(f"database {where}: cannot open the store ({detail}); {hint} (database.url)")


def _current_url() -> str:
    db = database.obj
    if isinstance(db, peewee.PostgresqlDatabase):
        params = db.connect_params
        user = f"{params['user']}@" if params.get("user") else ""
        port = f":{params['port']}" if params.get("port") else ""
        return f"postgresql://{user}{params.get('host', '')}{port}/{db.database}"
    if isinstance(db, peewee.SqliteDatabase):
        return f"sqlite:///{db.database}"
    return "(not opened)"
