"""Versioned schema migrations, applied at start and by ``syncd db upgrade``.

Each migration is a function of the database, numbered by its place in :data:`MIGRATIONS`; the applied number is
kept in ``schema_version``. A migration runs in a transaction (PostgreSQL and SQLite both have transactional DDL),
so a crash leaves the schema at the last complete version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import peewee

from syncd.domain.folding import fold
from syncd.store import dialect
from syncd.store.db import database
from syncd.store.models import (
    ALL_MODELS,
    DirectoryGroup,
    GroupMember,
    HeldRemoval,
    Identity,
    Member,
    Organization,
    OutboxEvent,
    PlanBasis,
    Token,
)
from syncd.store.sql import update_many

MIGRATION_LOCK_KEY = 7362001
MEMBER_TARGET = "member:"  # a member's ledger target and outbox order key: this prefix and the match key

log = logging.getLogger("syncd.migrations")


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


def _one_identity_folding(db: peewee.Database) -> None:
    """Identifiers folded by lower case alone are folded again by the one folding (:mod:`syncd.domain.folding`: NFC,
    lower case), so that a person stored once composed (U+00E9) and once decomposed (e + U+0301) is one key.

    Match keys (identity, member, held removal, the undelivered outbox's order keys) were ``strip().lower()``, and
    staged ``user_name_lower`` / ``email_lower`` / ``display_name_lower`` were ``lower()`` before staging used the
    one folding; each stored value is re-folded in place, since ``fold(s.lower()) == fold(s)`` (a property test
    pins it) gives the value the current code computes. ``unique_name`` is left alone: only SCIM writes set it,
    always with the one folding. Idempotent: ``fold`` is, and a run over a re-folded store changes
    nothing. The ledger is append-only and hash-chained: past entries keep the targets they were written with.

    Two members of an org that now fold to one key are not merged here: a merge changes roles, teams and status,
    which only the planner may do, with a ledger entry each. The member already holding the folded key keeps it
    (else the oldest takes it); the others keep their own keys and are named in a warning; every identity joins the
    kept member; and the org's plan basis is dropped, so its next run plans the whole org, which suspends the others
    ("no source asserts them any more": ledgered, guarded, reversible inside the grace period).
    """
    for field in (
        Identity.user_name_lower,
        Identity.email_lower,
        Identity.match_key,
        DirectoryGroup.display_name_lower,
    ):
        _refold(field)
    kept_apart = _refold_member_keys()
    _refold_held_removals(kept_apart)
    _refold_order_keys(kept_apart)
    PlanBasis.delete().where(PlanBasis.org.in_(sorted({org for org, _ in kept_apart}))).execute()


def _refold(field: peewee.Field) -> None:
    """Re-fold one column of folded identifiers in every row where the one folding gives another value."""
    model = field.model
    rows = model.select(model.id, field).where(field.is_null(False)).tuples()
    update_many(model, (field.name,), [(new, row_id) for row_id, value in rows if (new := fold(value)) != value])


def _refold_member_keys() -> set[tuple[int, str]]:
    """Re-fold members' match keys; return the (org id, key) of the members left with their own key because
    another member of their org folds to the same one."""
    by_folded: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for member_id, org_id, key in Member.select(Member.id, Member.org, Member.match_key).order_by(Member.id).tuples():
        by_folded.setdefault((org_id, fold(key)), []).append((member_id, key))
    moved: list[tuple[str, int]] = []
    kept_apart: set[tuple[int, str]] = set()
    for (org_id, folded), members in by_folded.items():
        keeper = next((m for m in members if m[1] == folded), members[0])
        if keeper[1] != folded:
            moved.append((folded, keeper[0]))
        others = [key for member_id, key in members if member_id != keeper[0]]
        if others:
            kept_apart.update((org_id, key) for key in others)
            log.warning(
                "store.migration.members_fold_together",
                extra={
                    "syncd_fields": {
                        "org": Organization.get_by_id(org_id).slug,
                        "kept": folded,
                        "apart": others,
                        "next": "the org's next run suspends the members kept apart (their identities joined the "
                        "kept one); pin the kept member's role if one of them was pinned",
                    }
                },
            )
    update_many(Member, ("match_key",), moved)
    return kept_apart


def _refold_held_removals(kept_apart: set[tuple[int, str]]) -> None:
    """Re-fold held removals' keys as their members' were (one key per held plan)."""
    taken = set(HeldRemoval.select(HeldRemoval.plan, HeldRemoval.match_key).tuples())
    moved = []
    for row_id, org_id, plan_id, key in HeldRemoval.select(
        HeldRemoval.id, HeldRemoval.org, HeldRemoval.plan, HeldRemoval.match_key
    ).tuples():
        folded = fold(key)
        if folded != key and (org_id, key) not in kept_apart and (plan_id, folded) not in taken:
            taken.add((plan_id, folded))
            moved.append((folded, row_id))
    update_many(HeldRemoval, ("match_key",), moved)


def _refold_order_keys(kept_apart: set[tuple[int, str]]) -> None:
    """Re-fold the order key of undelivered events about a member, so they stay in order with the member's next."""
    pending = OutboxEvent.select(OutboxEvent.id, OutboxEvent.org, OutboxEvent.order_key).where(
        OutboxEvent.delivered_at.is_null(), OutboxEvent.order_key.startswith(MEMBER_TARGET)
    )
    moved = []
    for row_id, org_id, order_key in pending.tuples():
        key = order_key.removeprefix(MEMBER_TARGET)
        if fold(key) != key and (org_id, key) not in kept_apart:
            moved.append((MEMBER_TARGET + fold(key), row_id))
    update_many(OutboxEvent, ("order_key",), moved)


TOKEN_EPOCH = "token_epoch"
"""The counter that moves with every change that can end a token's validity (syncd/admin/tokens.py)."""


def _token_epoch(db: peewee.Database) -> None:
    """``token_epoch``: a one-row counter that goes up in the transaction of any change that can end a bearer
    token's validity (a token revoked, deleted, given another expiry, scope, org or hash; an org deleted or given
    another status or slug), so a process may keep the tokens it authenticated while the counter stands still
    (syncd/admin/tokens.py). Idempotent: the table, its row and the triggers are made only when missing."""
    watched = [
        (Token._meta.table_name, ("revoked_at", "expires_at", "scope", "org_id", "token_hash")),
        (Organization._meta.table_name, ("status", "slug")),
    ]
    for statement in dialect.of(db).change_counter(TOKEN_EPOCH, watched):
        db.execute_sql(statement)


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _initial_schema,
    _plan_basis,
    _text_columns,
    _outbox_message_ids,
    _group_member_attributes,
    _member_manager,
    _held_removals,
    _source_notes,
    _one_identity_folding,
    _token_epoch,
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
