"""Versioned schema migrations, applied at start and by ``syncd db upgrade``.

Each migration is a function of the database, numbered by its place in :data:`MIGRATIONS`; the applied number is
kept in ``schema_version``. A migration runs in a transaction (PostgreSQL and SQLite both have transactional DDL),
so a crash leaves the schema at the last complete version.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from syncd.store.db import database
from syncd.store.models import ALL_MODELS, PlanBasis


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField()

    class Meta:
        database = database
        table_name = "schema_version"


def _initial_schema(db: peewee.Database) -> None:
    db.create_tables(ALL_MODELS)


def _plan_basis(db: peewee.Database) -> None:
    """Version 2: the digest of the config the org's last whole-org plan used (touched-only planning).

    ``safe``: a database created at version 2 or later already has it from the initial schema (ALL_MODELS)."""
    db.create_tables([PlanBasis], safe=True)


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (_initial_schema, _plan_basis)


def current_version() -> int:
    db = database.obj
    if not db.table_exists("schema_version"):
        return 0
    row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)


def latest_version() -> int:
    return len(MIGRATIONS)


def upgrade() -> list[int]:
    """Apply every migration newer than the database; return the versions applied (empty when current)."""
    db = database.obj
    applied: list[int] = []
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(7362001)")
    for number, migration in enumerate(MIGRATIONS, start=1):
        with db.atomic():
            if isinstance(db, peewee.PostgresqlDatabase):
                db.execute_sql("SELECT pg_advisory_xact_lock(7362001)")
            if current_version() >= number:
                continue
            migration(db)
            SchemaVersion.create(version=number)
            applied.append(number)
    return applied
