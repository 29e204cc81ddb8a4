"""What a new user meets first: a missing config, a typo, a bad value, an unreachable database, a usage slip.

Each answer is one line on stderr naming the fix, with exit 1, and changes nothing.
"""

from __future__ import annotations

import json

import pytest

from connectors.interface import ConfigError
from syncd import config
from syncd.store.models import LedgerEntry, Organization

FILE_SOURCE = '[[sources]]\nname = "hr"\norg = "acme"\nkind = "file"\npath = "people.csv"\n'


def org_config(url: str, policy: str = "", extra: str = "") -> str:
    return (
        f'[database]\nurl = "{url}"\n\n[[orgs]]\nslug = "acme"\nname = "Acme"\ndomains = ["acme.com"]\n'
        f"[orgs.policy]\n{policy}\n{extra}"
    )


def one_line_error(result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture
def no_config_anywhere(monkeypatch, tmp_path):
    """No --config, no SYNCD_CONFIG, and no system config: the system path is pointed at a file that does not
    exist (this machine's /etc may hold one), and the test runs in an empty folder to see nothing is made there."""
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "syncd.toml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("command", [["sources", "list"], ["members", "list", "--org", "demo"], ["plan", "hr"]])
def test_without_a_config_a_command_refuses_naming_both_ways_and_makes_no_database(cli, no_config_anywhere, command):
    error = one_line_error(cli(*command))
    assert "--config FILE" in error and "SYNCD_CONFIG" in error
    assert list(no_config_anywhere.iterdir()) == []


def test_the_system_config_is_read_when_nothing_else_names_one_and_verbose_says_so(
    cli, no_config_anywhere, monkeypatch, tmp_path, sqlite_url
):
    system = tmp_path / "etc" / "syncd.toml"
    system.parent.mkdir()
    system.write_text(f'[database]\nurl = "{sqlite_url}"\n', encoding="utf-8")
    listed = cli("--verbose", "orgs", "list")
    assert listed.code == 0, listed.stderr
    assert f"path={system}" in listed.stderr and "chosen_by=" in listed.stderr


def test_verbose_names_the_config_file_and_how_it_was_chosen(cli, write_config, sqlite_url, monkeypatch):
    path = write_config(f'[database]\nurl = "{sqlite_url}"\n')
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    listed = cli("--verbose", "orgs", "list")
    assert listed.code == 0 and f"path={path}" in listed.stderr and "chosen_by=SYNCD_CONFIG" in listed.stderr
    assert f"path={path}" not in cli("orgs", "list").stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["plan"], "one of the arguments source --org is required"),
        (["members", "list"], "--org"),
        (["audit", "list", "--org", "acme", "--last", "0"], "expected a positive whole number"),
        (["nonsense"], "invalid choice"),
        (["members", "set-role", "--org", "acme", "a@acme.com", "king"], "invalid choice"),
    ],
)
def test_a_usage_error_exits_1_in_one_line_not_2_which_means_changes_pending(cli, argv, says):
    error = one_line_error(cli(*argv))
    assert says in error and "--help" in error


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ("guard_max_percent = 250", "orgs[0].policy.guard_max_percent: expected 0 to 100"),
        ("guard_max_percent = -1", "orgs[0].policy.guard_max_percent: expected 0 to 100"),
        ("guard_max_count = -5", "orgs[0].policy.guard_max_count: expected 0 or more"),
        ("grace_days = -1", "orgs[0].policy.grace_days: expected 0 or more"),
    ],
)
def test_policy_values_out_of_range_are_refused_naming_the_key_and_range(write_config, sqlite_url, policy, named):
    with pytest.raises(ConfigError) as error:
        config.load(write_config(org_config(sqlite_url, policy)))
    assert str(error.value).startswith(named)


def test_a_policy_at_the_edges_of_its_ranges_is_accepted(write_config, sqlite_url):
    policy = "guard_max_percent = 100\nguard_max_count = 0\ngrace_days = 0"
    (org,) = config.load(write_config(org_config(sqlite_url, policy))).orgs
    assert (org.policy.guard_max_percent, org.policy.guard_max_count, org.policy.grace_days) == (100, 0, 0)


def test_a_domain_that_is_not_one_is_refused_in_config_and_by_orgs_create(cli, write_config, sqlite_url):
    bad = org_config(sqlite_url).replace('["acme.com"]', '["acme.com", "not a domain"]')
    with pytest.raises(ConfigError) as error:
        config.load(write_config(bad))
    assert str(error.value).startswith("orgs[0].domains[1]: 'not a domain' is not a domain name")
    path = str(write_config(f'[database]\nurl = "{sqlite_url}"\n', "plain.toml"))
    created = cli("--config", path, "orgs", "create", "beta", "--name", "Beta", "--domain", "not a domain")
    assert "--domain: 'not a domain' is not a domain name" in one_line_error(created)
    assert not Organization.select().where(Organization.slug == "beta").exists()
    assert cli("--config", path, "orgs", "create", "beta", "--name", "Beta", "--domain", "Beta.Example").code == 0


def test_a_typo_in_a_source_key_lists_every_valid_key_and_suggests_the_closest(write_config, sqlite_url):
    text = org_config(sqlite_url) + FILE_SOURCE + 'schedul = "5m"\n'
    with pytest.raises(ConfigError) as error:
        config.load(write_config(text))
    message = str(error.value)
    assert message.startswith("sources[0].schedul: unknown key; did you mean 'schedule'?")
    for key in ("name", "org", "kind", "schedule", "precedence", "enabled", "full_snapshot_every", "path", "format"):
        assert f" {key}," in message or f" {key})" in message, key


def test_a_config_edit_that_changes_an_org_is_said_once_by_the_command_that_records_it(cli, write_config, sqlite_url):
    path = write_config(org_config(sqlite_url, "guard_max_count = 5"))
    first = cli("--config", str(path), "sources", "list")
    assert first.code == 0 and "org acme created from the config" in first.stderr
    assert cli("--config", str(path), "sources", "list").stderr == ""
    path.write_text(org_config(sqlite_url, "guard_max_count = 7"), encoding="utf-8")
    changed = cli("--config", str(path), "sources", "list")
    assert "syncd: note: org acme updated from the config: policy.guard_max_count (ledgered as org.update)" in (
        changed.stderr
    )
    assert cli("--config", str(path), "sources", "list").stderr == ""
    updates = LedgerEntry.select().where(LedgerEntry.action == "org.update")
    assert [json.loads(e.after)["policy"]["guard_max_count"] for e in updates] == [7]


@pytest.mark.parametrize(
    "command", [["sources", "list"], ["orgs", "list"], ["audit", "verify", "--org", "acme"], ["plan", "--org", "acme"]]
)
def test_an_unreachable_postgresql_is_one_line_naming_the_url_without_its_password(cli, write_config, command):
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    path = write_config('[database]\nurl = "postgresql://syncd:s3cret@127.0.0.1:1/syncd"\n')
    error = one_line_error(cli("--config", str(path), *command))
    assert "postgresql://syncd@127.0.0.1:1/syncd" in error and "s3cret" not in error
    assert "check that PostgreSQL is running" in error


def test_a_sqlite_store_in_a_missing_folder_is_one_line(cli, write_config, tmp_path):
    path = write_config(f'[database]\nurl = "sqlite:///{tmp_path}/missing/syncd.db"\n')
    error = one_line_error(cli("--config", str(path), "orgs", "list"))
    assert f"sqlite:///{tmp_path}/missing/syncd.db" in error and "folder exists" in error
