"""Versioned schema migrations, applied at start and by ``syncd db upgrade``.

Each migration is a function of the database, numbered by its place in :data:`MIGRATIONS`; the applied number is
kept in ``schema_version``. A migration runs in a transaction (PostgreSQL and SQLite both have transactional DDL),
so a crash leaves the schema at the last complete version.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from syncd.store.db import database
from syncd.store.models import ALL_MODELS, HeldRemoval, PlanBasis


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


def _text_columns(db: peewee.Database) -> None:
    """Version 3: identity, group, member, team and ledger strings become ``TEXT`` (limits in syncd.store.limits).

    PostgreSQL created them as ``varchar(255)``, which refused a valid 254-octet email inside a longer userName, a
    256-character group name and the like with an error that stopped a whole sync; SQLite never enforced the length.
    Only PostgreSQL columns still ``character varying`` where the model now says ``TEXT`` are altered, so the step is
    a no-op on SQLite and on a database created at version 3 or later.
    """
    if not isinstance(db, peewee.PostgresqlDatabase):
        return
    for model in ALL_MODELS:
        table = model._meta.table_name
        for field in model._meta.sorted_fields:
            if not isinstance(field, peewee.TextField):
                continue
            kind = db.execute_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s AND column_name = %s",
                (table, field.column_name),
            ).fetchone()
            if kind is not None and kind[0] == "character varying":
                db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{field.column_name}" TYPE text')


def _held_removals(db: peewee.Database) -> None:
    """The SCIM guard (syncd/held.py): the ``held_removal`` table, and the ledger index on (org, action, at) that
    counts an org's SCIM-caused removals in its rolling window. Idempotent: a database created with the current
    models already has both."""
    db.create_tables([HeldRemoval], safe=True)
    db.execute_sql("CREATE INDEX IF NOT EXISTS ledger_entry_org_id_action_at ON ledger_entry (org_id, action, at)")


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _initial_schema,
    _plan_basis,
    _text_columns,
    _held_removals,
)


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
