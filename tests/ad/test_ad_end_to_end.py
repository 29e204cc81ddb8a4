"""``syncd sync`` of a Samba AD domain read by a least-privilege account: a first full sync, then 5% of the people
changed (leavers deleted and moved to OU=Leavers, disables, moves between nested groups, renames) and one
incremental sync; every person's status, role and teams are compared with what the rules imply (issue 15, "Done
when"). Once as a plain domain user (USN increment, leavers by objectGUID census) and once as a user granted
"Replicating Directory Changes" (DirSync increment; Samba still hides tombstones from it, so the census runs too).
"""

from __future__ import annotations

import json

import ldap3
import pytest

from tests.ad.samba import (
    GROUPS,
    LEAVERS,
    READER,
    REPLICATOR,
    STAFF,
    department_of,
    disabled_at_load,
    group_dn,
    user_dn,
)
from tests.directory_checks import ldap_sync_config, members

#: The org's policy and rules: a role from a department group, teams from the divisions it nests in.
ORG_TOML = """match_on = "email"
[orgs.policy]
guard_max_count = 1000
guard_max_percent = 100

[[orgs.rules]]
group = "IT Admins"
role = "admin"

[[orgs.rules]]
group = "Division A"
team = "division-a"

[[orgs.rules]]
group = "Division B"
team = "division-b"
"""
DELETED = [10 + 100 * i for i in range(30)]
MOVED_OUT = [20 + 100 * i for i in range(30)]
DISABLED = [30 + 100 * i for i in range(30)]
TO_DEPT_13 = [40 + 100 * i for i in range(15)]  # from Dept 00 (Division A) to Dept 13 (Division B)
TO_DEPT_03 = [50 + 100 * i for i in range(15)]  # from Dept 10 (Division B) to Dept 03 (IT Admins, Division A)
RENAMED = [60 + 100 * i for i in range(30)]


def change_five_percent(dc) -> None:
    admin = dc.admin()
    for number in DELETED:
        admin.delete(user_dn(number))
    for number in MOVED_OUT:
        admin.modify_dn(user_dn(number), f"CN=User {number:05d}", new_superior=LEAVERS)
    for number in DISABLED:
        admin.modify(user_dn(number), {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})
    for numbers, old, new in ((TO_DEPT_13, "Dept 00", "Dept 13"), (TO_DEPT_03, "Dept 10", "Dept 03")):
        dns = [user_dn(number) for number in numbers]
        admin.modify(group_dn(old), {"member": [(ldap3.MODIFY_DELETE, dns)]})
        admin.modify(group_dn(new), {"member": [(ldap3.MODIFY_ADD, dns)]})
    for number in RENAMED:
        admin.modify_dn(user_dn(number), f"CN=Renamed {number:05d}")
        admin.modify(
            f"CN=Renamed {number:05d},{STAFF}", {"displayName": [(ldap3.MODIFY_REPLACE, [f"Renamed {number:05d}"])]}
        )


def expected(users: int, changed: bool) -> dict[str, tuple[str, str | None, frozenset[str] | None, str]]:
    """email → (status, role, teams, display name) the rules imply; role and teams only for active members."""
    wanted = {}
    for number in range(users):
        dept = department_of(number)
        name = f"User {number:05d}"
        active = not disabled_at_load(number)
        if changed:
            dept = 13 if number in TO_DEPT_13 else 3 if number in TO_DEPT_03 else dept
            active = active and number not in DELETED + MOVED_OUT + DISABLED
            name = f"Renamed {number:05d}" if number in RENAMED else name
        email = f"u{number:05d}@example.com"
        if active:
            team = "division-a" if dept < 10 else "division-b"
            wanted[email] = ("active", "admin" if dept == 3 else "member", frozenset({team}), name)
        else:
            wanted[email] = ("suspended", None, None, name)
    return wanted


def observed(cli, path) -> dict[str, tuple[str, str | None, frozenset[str] | None, str]]:
    seen = {}
    for email, row in members(cli, path).items():
        if row["status"] == "active":
            teams = frozenset(team["team"] for team in row["teams"])
            seen[email] = ("active", row["role"], teams, row["display_name"])
        else:
            seen[email] = (row["status"], None, None, row["display_name"])
    return seen


def _source(dc, account: str, settings: str = "") -> dict[str, str]:
    """The source ``corp-ad`` reading the staff OU over LDAPS as ``account`` (``settings``: its other keys)."""
    return {
        "source": "corp-ad",
        "url": dc.ldaps_url,
        "bind_dn": account,
        "password_file": dc.reader_password_file,
        "users_base": STAFF,
        "groups_base": GROUPS,
        "domain": "example.com",
        "settings": f'ca_file = "{dc.ca}"\n{settings}',
    }


def compare(wanted, seen) -> list[str]:
    """Person by person: who is wrong and how (a disabled account never synced counts as suspended)."""
    wrong = []
    for email, want in wanted.items():
        got = seen.get(email)
        if got is None and want[0] == "suspended":
            continue
        if got != want:
            wrong.append(f"{email}: want {want}, got {got}")
    return wrong


@pytest.mark.parametrize(("account", "mode"), [(READER, "usn"), (REPLICATOR, "dirsync")])
def test_a_least_privilege_account_syncs_five_percent_of_changes_exactly(
    cli, write_config, sqlite_url, fresh_samba, account, mode
):
    path = write_config(ldap_sync_config(sqlite_url, **_source(fresh_samba, account), org=ORG_TOML))
    first = cli("--config", str(path), "sync", "corp-ad")
    assert first.code == 0, first.stderr
    assert compare(expected(fresh_samba.plan.users, changed=False), observed(cli, path)) == []

    change_five_percent(fresh_samba)
    second = cli("--config", str(path), "sync", "corp-ad")
    listed = cli("--config", str(path), "sources", "list", "--format", "json")
    shown = cli("--config", str(path), "sources", "show", "corp-ad")

    assert second.code == 0, second.stderr
    assert compare(expected(fresh_samba.plan.users, changed=True), observed(cli, path)) == []
    (source,) = [row for row in json.loads(listed.stdout) if row["name"] == "corp-ad"]
    assert source["last_error"] is None and source["last_full_at"] != source["last_success_at"]  # an increment
    assert "deletions visible: no (no tombstone under CN=Deleted Objects is readable by bind_dn)" in source["notes"]
    assert f"incremental {mode}: leavers found by an objectGUID census of the scope every increment" in source["notes"]
    assert shown.code == 0 and "[notes]\ndeletions visible: no" in shown.stdout


def test_increments_between_leaver_checks_are_never_reported_complete(cli, write_config, sqlite_url, fresh_samba):
    """With ``leaver_check_every = 2`` the increment between checks is applied but exits 4 and says why on the
    source; the next one runs the census and suspends the leaver it could not see."""
    path = write_config(ldap_sync_config(sqlite_url, **_source(fresh_samba, READER, "leaver_check_every = 2\n")))
    assert cli("--config", str(path), "sync", "corp-ad").code == 0
    fresh_samba.admin().delete(user_dn(11))

    blind = cli("--config", str(path), "sync", "corp-ad")
    after_blind = observed(cli, path)["u00011@example.com"][0]
    listed = json.loads(cli("--config", str(path), "sources", "list", "--format", "json").stdout)
    checked = cli("--config", str(path), "sync", "corp-ad")
    after_check = observed(cli, path)["u00011@example.com"][0]

    assert blind.code == 4 and "incomplete view" in blind.stdout + blind.stderr
    assert after_blind == "active"
    (source,) = [row for row in listed if row["name"] == "corp-ad"]
    assert source["last_error"].startswith("incomplete view: ") and "leaver check runs every 2" in source["last_error"]
    assert checked.code == 0, checked.stderr
    assert after_check == "suspended"
