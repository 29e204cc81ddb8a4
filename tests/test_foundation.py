"""The foundation: config validation, migrations, orgs and tokens through the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import psycopg2
import pytest

from connectors.interface import ConfigError
from syncd import config
from syncd.admin import tokens
from syncd.clock import utcnow
from syncd.store import current_version, sql
from syncd.store.migrations import latest_version, upgrade
from syncd.sync import ledger, orgs


def test_config_with_only_a_database_url_is_valid(write_config, sqlite_url):
    path = write_config(f'[database]\nurl = "{sqlite_url}"\n')
    cfg = config.load(path)
    assert cfg.database.url == sqlite_url
    assert cfg.server.listen == "127.0.0.1:8080"
    assert cfg.orgs == () and cfg.sources == ()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[database]\nurl = 5\n", "database.url"),
        ('[database]\nulr = "sqlite:///x"\n', "database.ulr"),
        ('[server]\nworkers = "two"\n', "server.workers"),
        ("[server]\nprocesses = 0\n", "server.processes: expected 1 to 64, got 0"),
        ("[server]\nprocesses = 65\n", "server.processes: expected 1 to 64, got 65"),
        ('[[orgs]]\nslug = "acme"\n[orgs.policy]\ngrace_days = "30"\n', "orgs[0].policy.grace_days"),
        ('[[orgs]]\nslug = "acme"\nmatch_on = "phone"\n', "orgs[0].match_on"),
        ('[[orgs]]\nslug = "Acme Corp"\n', "orgs[0].slug"),
        ('[[orgs]]\nslug = "acme"\n[[orgs.rules]]\ngroup = "X"\nrole = "king"\n', "orgs[0].rules[0].role"),
        ('[[sources]]\nname = "hr"\norg = "acme"\nkind = "fax"\n', "sources[0].kind"),
        ("bogus = 1\n", "bogus"),
    ],
)
def test_config_errors_name_the_key(write_config, text, named):
    with pytest.raises(ConfigError) as error:
        config.load(write_config(text))
    assert str(error.value).startswith(named)


def test_migrations_apply_once(store):
    assert current_version() == latest_version()
    assert upgrade() == []


def test_token_is_stored_only_as_a_hash_and_authenticates(store):
    org = orgs.create("acme", "Acme", ["acme.com"])
    row, secret = tokens.create(org, "scim")
    assert secret not in json.dumps(row.__data__, default=str)
    principal = tokens.authenticate(secret)
    assert principal is not None and principal.org_slug == "acme" and principal.scope == "scim"
    assert tokens.authenticate(secret + "x") is None
    assert tokens.authenticate("Bearer " + secret) is None


def test_revoked_and_expired_tokens_are_refused(store):
    org = orgs.create("acme", "Acme")
    revoked_row, revoked = tokens.create(org, "scim")
    tokens.revoke(revoked_row.id)
    assert tokens.authenticate(revoked) is None
    _, expiring = tokens.create(org, "read", expires_in=timedelta(hours=1))
    assert tokens.authenticate(expiring) is not None
    assert tokens.authenticate(expiring, now=utcnow() + timedelta(hours=2)) is None


def test_org_creation_and_tokens_are_ledgered_and_verify(store):
    org = orgs.create("acme", "Acme")
    row, _ = tokens.create(org, "admin")
    tokens.revoke(row.id)
    result = ledger.verify(org.id)
    assert result.ok and result.checked == 3


def test_cli_creates_org_and_prints_token_alone_on_last_line(cli, write_config, database_url, store):
    path = write_config(f'[database]\nurl = "{database_url}"\n')
    created = cli("--config", str(path), "orgs", "create", "acme", "--name", "Acme Corp", "--domain", "acme.com")
    assert created.code == 0, created.stderr
    made = cli("--config", str(path), "tokens", "create", "--org", "acme", "--scope", "scim", "--expires-in", "90d")
    assert made.code == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("syncd_") and " " not in secret
    assert tokens.authenticate(secret) is not None
    listed = cli("--config", str(path), "tokens", "list", "--format", "json")
    assert json.loads(listed.stdout)[0]["state"] == "active"
    assert secret not in listed.stdout


def test_cli_errors_are_one_line_with_nonzero_exit(cli, write_config, sqlite_url):
    path = write_config(f'[database]\nurl = "{sqlite_url}"\n')
    result = cli("--config", str(path), "tokens", "create", "--org", "nope", "--scope", "scim")
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "no org 'nope'" in result.stderr
    bad = cli("--config", str(write_config("[database]\nurl = 1\n", "bad.toml")), "orgs", "list")
    assert bad.code == 1 and "database.url" in bad.stderr


@pytest.mark.parametrize(
    ("migration", "table", "columns"),
    [
        ("_group_member_attributes", "group_member", ("display", "ref", "member_type")),
        ("_member_manager", "member", ("manager",)),
    ],
)
def test_a_column_migration_adds_its_columns_once(store, migration, table, columns):
    """A database from before the migration lacks its columns: drop them, forget the migration, upgrade; then run
    it again on a current schema (idempotent). Migrations are found by name, whatever their place."""
    from syncd.store.migrations import MIGRATIONS, SchemaVersion

    number = [m.__name__ for m in MIGRATIONS].index(migration) + 1
    with store.atomic():
        for column in columns:
            store.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        # The applied version is the highest recorded: forget this migration and every later one (idempotent).
        SchemaVersion.delete().where(SchemaVersion.version >= number).execute()
    assert upgrade() == list(range(number, len(MIGRATIONS) + 1))
    assert set(columns) <= {c.name for c in store.get_columns(table)}
    with store.atomic():
        MIGRATIONS[number - 1](store)
    assert set(columns) <= {c.name for c in store.get_columns(table)}


def _other_connection(database_url: str) -> Any:
    """A connection of another client to the same store (as another process would hold)."""
    if database_url.startswith("sqlite"):
        return sqlite3.connect(database_url.removeprefix("sqlite:///"))
    return psycopg2.connect(database_url)


@pytest.mark.parametrize(
    ("change", "scope_after"),
    [
        ("UPDATE token SET revoked_at = '2026-01-01 00:00:00' WHERE id = {token}", None),
        ("UPDATE token SET expires_at = '2020-01-01 00:00:00' WHERE id = {token}", None),
        ("UPDATE token SET scope = 'read' WHERE id = {token}", "read"),
        ("DELETE FROM token WHERE id = {token}", None),
        ("UPDATE organization SET status = 'disabled' WHERE id = {org}", None),
    ],
)
def test_a_known_token_changed_by_another_client_is_judged_anew_at_once(store, database_url, change, scope_after):
    org = orgs.create("acme", "Acme")
    row, secret = tokens.create(org, "scim")
    assert tokens.authenticate(secret) == tokens.authenticate(secret) is not None
    other = _other_connection(database_url)
    try:
        other.cursor().execute(change.format(token=row.id, org=org.id))
        other.commit()
    finally:
        other.close()
    principal = tokens.authenticate(secret)
    assert (principal.scope if principal else None) == scope_after


def test_a_known_token_is_authenticated_without_reading_the_token_again(store, monkeypatch):
    org = orgs.create("acme", "Acme")
    _, secret = tokens.create(org, "scim")
    read: list[str] = []
    real = sql.rows
    monkeypatch.setattr(sql, "rows", lambda name, *args: read.append(name) or real(name, *args))
    for _ in range(3):
        assert tokens.authenticate(secret) is not None
    assert read.count("token.lookup") == 1
    tokens.create(org, "admin")  # a new token ends no other's validity
    assert tokens.authenticate(secret) is not None and read.count("token.lookup") == 1


def test_the_token_epoch_migration_is_idempotent(store):
    from syncd.store.migrations import MIGRATIONS

    org = orgs.create("acme", "Acme")
    row, secret = tokens.create(org, "scim")
    MIGRATIONS[-1](store)
    assert store.execute_sql("SELECT COUNT(*) FROM token_epoch").fetchone()[0] == 1
    assert tokens.authenticate(secret) is not None
    tokens.revoke(row.id)
    assert tokens.authenticate(secret) is None
