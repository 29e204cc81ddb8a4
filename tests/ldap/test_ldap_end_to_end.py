"""``syncd sync`` with an LDAP source drives the whole pipeline: members and roles come out right, and the ledger
says why (issue 7, "Done when")."""

from __future__ import annotations

from syncd.admin import shell
from syncd.store.models import LedgerEntry
from syncd.sync import pipeline
from tests.directory_checks import ldap_sync_config, members
from tests.ldap.directory import GROUPS, PEOPLE, SYNCD_DN


def _source(slapd, password_file) -> dict[str, str]:
    """The source ``corp-ldap`` reading the seeded directory as the syncd service account."""
    return {
        "source": "corp-ldap",
        "url": slapd.url,
        "bind_dn": SYNCD_DN,
        "password_file": password_file,
        "users_base": PEOPLE,
        "groups_base": GROUPS,
        "domain": "example.org",
    }


def test_syncd_sync_of_an_ldap_source_grants_admin_from_its_group_and_ledgers_why(
    cli, write_config, sqlite_url, slapd, password_file
):
    path = write_config(
        ldap_sync_config(
            sqlite_url,
            **_source(slapd, password_file),
            org='match_on = "email"\n\n[[orgs.rules]]\ngroup = "IT Admins"\nrole = "admin"\n',
        )
    )
    runtime = shell.start(str(path))

    planned = pipeline.run_source(runtime.config, "corp-ldap", dry_run=True)
    synced = cli("--config", str(path), "sync", "corp-ldap")
    listed = members(cli, path)
    ledgered = LedgerEntry.select().count()
    again = cli("--config", str(path), "sync", "corp-ldap")

    assert planned.actions > 0 and not planned.applied
    assert synced.code == 0, synced.stderr
    assert listed["alice@example.org"]["role"] == "admin"
    assert listed["bob@example.org"]["role"] == "admin"
    assert listed["eve@example.org"]["role"] == "member"
    assert listed["alice@example.org"]["status"] == "active"
    assert "corp-ldap" in listed["alice@example.org"]["sources"]
    reasons = [entry.reason for entry in LedgerEntry.select() if "alice@example.org" in entry.target]
    assert any("IT Admins" in reason for reason in reasons), reasons
    assert again.code == 0, again.stderr
    assert LedgerEntry.select().count() == ledgered  # the same directory read again changes nothing


def test_ldap_manager_dn_becomes_the_members_manager_now_and_in_history(
    cli, write_config, sqlite_url, slapd, password_file
):
    path = write_config(ldap_sync_config(sqlite_url, **_source(slapd, password_file)))
    assert cli("--config", str(path), "sync", "corp-ldap").code == 0

    def managers(*options: str) -> dict[str, str | None]:
        return {email: member["manager"] for email, member in members(cli, path, *options).items()}

    live = managers()
    assert live["bob@example.org"] == "alice@example.org"
    assert live["eve@example.org"] == "alice@example.org"  # her manager DN is spelled "UID=Alice, OU=PEOPLE,..."
    assert live["alice@example.org"] is None
    assert managers("--at", "2999-01-01T00:00:00Z") == live
