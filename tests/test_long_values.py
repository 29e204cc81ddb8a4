"""Values as long as the RFCs allow fit on SQLite and PostgreSQL alike, and one record the store cannot keep is a
problem line of its read, never a failed sync (syncd.store.limits).

Each test runs the real ``syncd sync`` on both databases over a real CSV export read by the file connector.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from syncd.store.limits import MAX_IDENTIFIER_CHARS
from syncd.store.models import Member

CONFIG = """
[database]
url = "{url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]

[[sources]]
name = "hr"
org = "acme"
kind = "file"
path = "hr.csv"
"""

# RFC 5321 §4.5.3.1: a 64-octet local part and a domain that brings the address to its 254-octet limit.
LONGEST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 56 + ".test"


def export(path: Path, rows: list[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([("Employee ID", "Email", "Department"), *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def staff(count: int) -> list[tuple[str, str, str]]:
    return [(f"E{i}", f"user{i}@acme.com", "Sales") for i in range(count)]


def test_a_254_octet_email_joins_with_fifty_others_on_both_databases(cli, store, database_url, write_config, tmp_path):
    assert len(LONGEST_EMAIL) == 254
    export(tmp_path / "hr.csv", [*staff(50), ("E-long", LONGEST_EMAIL, "D" * 300)])
    config = write_config(CONFIG.format(url=database_url))
    result = cli("--config", str(config), "sync", "hr")
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    emails = {m.email for m in Member.select()}
    assert len(emails) == 51 and LONGEST_EMAIL in emails


def test_one_record_over_the_identifier_limit_is_a_problem_line_and_the_rest_is_applied(
    cli, store, database_url, write_config, tmp_path
):
    too_long = "x" * (MAX_IDENTIFIER_CHARS + 1) + "@acme.com"
    export(tmp_path / "hr.csv", staff(50))
    config = write_config(CONFIG.format(url=database_url))
    assert cli("--config", str(config), "sync", "hr").code == 0
    export(tmp_path / "hr.csv", [*staff(49), ("E-long", too_long, "Sales")])
    result = cli("--config", str(config), "sync", "hr")
    assert "Traceback" not in result.stderr
    assert "user 'E-long': userName is" in result.stdout + result.stderr
    assert f"syncd keeps at most {MAX_IDENTIFIER_CHARS}" in result.stdout + result.stderr
    statuses = {m.email: m.status for m in Member.select()}
    assert len(statuses) == 50 and too_long not in statuses
    assert statuses["user49@acme.com"] == "active", "an incomplete read suspends no one"


def test_migration_widens_the_varchar_columns_of_an_existing_postgresql_database(postgres_url):
    """A database made before migration 3 had ``varchar(255)`` columns: put two back that way, and upgrade."""
    from syncd.store import open_database, upgrade
    from syncd.store.migrations import MIGRATIONS, SchemaVersion, _text_columns

    # Found by name: migrations after it (each idempotent) run again too, as on a database made before it.
    number = MIGRATIONS.index(_text_columns) + 1
    db = open_database(postgres_url)
    upgrade()
    with db.atomic():
        db.execute_sql('ALTER TABLE "identity" ALTER COLUMN "email" TYPE varchar(255)')
        db.execute_sql('ALTER TABLE "directory_group" ALTER COLUMN "display_name" TYPE varchar(255)')
        # The applied version is the highest recorded: forget this migration and every later one (idempotent).
        SchemaVersion.delete().where(SchemaVersion.version >= number).execute()
    try:
        assert upgrade() == list(range(number, len(MIGRATIONS) + 1))
        kinds = dict(
            db.execute_sql(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_name IN ('email', 'display_name')"
            ).fetchall()
        )
        assert kinds["identity.email"] == "text" and kinds["directory_group.display_name"] == "text"
        assert "character varying" not in kinds.values()
    finally:
        db.close()
