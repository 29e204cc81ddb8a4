"""Versioned schema migrations, applied at start and by ``syncd db upgrade``.

Each migration is a function of the database, numbered by its place in :data:`MIGRATIONS`; the applied number is
kept in ``schema_version``. A migration runs in a transaction (PostgreSQL and SQLite both have transactional DDL),
so a crash leaves the schema at the last complete version.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import peewee

from syncd.store import dialect
from syncd.store.db import database
from syncd.store.models import ALL_MODELS, GroupMember, HeldRemoval, Member, OutboxEvent, PlanBasis

MIGRATION_LOCK_KEY = 7362001


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
    if not dialect.of(db).column_types_are_enforced():
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


def _outbox_message_ids(db: peewee.Database) -> None:
    """The outbox's ``message_id`` (random ``webhook-id`` fixed at write time; it was ``evt_<row id>``, which two
    stores repeat) and ``order_key`` (one target's events are sent in order), with their indexes.

    Idempotent: a database whose initial schema already has the columns only gains what is missing. Rows written
    before get a random id each, and undelivered ones the target their payload names."""
    table = OutboxEvent._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    if "message_id" not in present:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "message_id" VARCHAR(64)')
    if "order_key" not in present:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "order_key" TEXT')
    random_id = dialect.of(db).random_message_id()
    db.execute_sql(f'UPDATE "{table}" SET "message_id" = {random_id} WHERE "message_id" IS NULL')
    pending = OutboxEvent.select(OutboxEvent.id, OutboxEvent.payload).where(
        OutboxEvent.delivered_at.is_null(), OutboxEvent.order_key.is_null()
    )
    for event_id, payload in pending.tuples():
        try:
            target = json.loads(payload).get("target")
        except (ValueError, AttributeError):
            target = None
        if isinstance(target, str):
            OutboxEvent.update(order_key=target).where(OutboxEvent.id == event_id).execute()
    # The names peewee gives these indexes in a fresh schema, so that IF NOT EXISTS finds them there.
    db.execute_sql(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_message_id" ON "{table}" ("message_id")')
    db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{table}_org_id_order_key" ON "{table}" ("org_id", "order_key")')


def _group_member_attributes(db: peewee.Database) -> None:
    """The ``display``, ``$ref`` and ``type`` a SCIM client sent with a group member (RFC 7643 §4.2), kept so a
    group's ``members`` read back exactly as written. Only columns still missing are added (a database created
    with them in the initial schema, or migrated before, is left alone)."""
    table = GroupMember._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    for field in (GroupMember.display, GroupMember.ref, GroupMember.member_type):
        if field.column_name not in present:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{field.column_name}" TEXT')


def _member_manager(db: peewee.Database) -> None:
    """A member's ``manager`` (the manager's email, RFC 7643 §4.3), shown by ``syncd members list``. Added only when
    missing, so a database created with it in the initial schema, or migrated before, is left alone."""
    table = Member._meta.table_name
    if Member.manager.column_name not in {column.name for column in db.get_columns(table)}:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{Member.manager.column_name}" TEXT')


def _held_removals(db: peewee.Database) -> None:
    """The SCIM guard (syncd/sync/held.py): the ``held_removal`` table, and the ledger index on (org, action, at) that
    counts an org's SCIM-caused removals in its rolling window. Idempotent: a database created with the current
    models already has both."""
    db.create_tables([HeldRemoval], safe=True)
    db.execute_sql("CREATE INDEX IF NOT EXISTS ledger_entry_org_id_action_at ON ledger_entry (org_id, action, at)")


def _source_notes(db: peewee.Database) -> None:
    """``source.last_notes``: what a source's last read could not see (an AD account blind to deletions), shown by
    ``syncd sources list``. Idempotent: skipped when the column exists (a database created with it)."""
    columns = {column.name for column in db.get_columns("source")}
    if "last_notes" not in columns:
        db.execute_sql('ALTER TABLE "source" ADD COLUMN "last_notes" TEXT')


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _initial_schema,
    _plan_basis,
    _text_columns,
    _outbox_message_ids,
    _group_member_attributes,
    _member_manager,
    _held_removals,
    _source_notes,
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
        dialect.of(db).transaction_lock(MIGRATION_LOCK_KEY)
    for number, migration in enumerate(MIGRATIONS, start=1):
        with db.atomic():
            dialect.of(db).transaction_lock(MIGRATION_LOCK_KEY)
            if current_version() >= number:
                continue
            migration(db)
            SchemaVersion.create(version=number)
            applied.append(number)
    return applied
