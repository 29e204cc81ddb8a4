"""A damaged HR export never deprovisions anyone (invariant 1: a partial or suspicious read implies no absence).

Each test runs the real ``syncd sync`` and ``syncd plan`` on SQLite and PostgreSQL over a real CSV file, first
whole, then damaged the way exports get damaged: cut mid-field, cut at a line end, an unclosed quote, far fewer
records than before, a NUL in an address. Nobody is suspended, and the reason is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.store.models import Member

CONFIG = """
[database]
url = "{url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.test"]
[orgs.policy]
guard_max_percent = 100
guard_max_count = 1000

[[sources]]
name = "hr"
org = "acme"
kind = "file"
path = "hr.csv"
"""

WHOLE = "email,department\na@acme.test,Sales\nb@acme.test,Sales\nc@acme.test,Sales\n"


class Export:
    def __init__(self, cli, config: Path, path: Path) -> None:
        self.cli, self.config, self.path = cli, config, path

    def sync(self, text: str, *flags: str):
        self.path.write_bytes(text.encode("utf-8"))
        return self.cli("--config", str(self.config), "sync", "hr", *flags)

    def plan(self):
        return self.cli("--config", str(self.config), "plan", "hr")


@pytest.fixture
def export(cli, store, database_url, write_config, tmp_path) -> Export:
    """The guard is switched off (100 %) so that only the read's own completeness protects anyone."""
    return Export(cli, write_config(CONFIG.format(url=database_url)), tmp_path / "hr.csv")


def statuses() -> dict[str, str]:
    return {m.email: m.status for m in Member.select()}


def test_the_issue_repro_a_file_cut_inside_its_last_field_suspends_no_one(export):
    assert export.sync(WHOLE).code == 0
    result = export.sync("email,department\na@acme.test,Sales\nb@acme.test,Sal")
    assert result.code == 4, result.stderr  # 4: an incomplete read, for cron and scripts to notice
    assert "line 3: the last record has no line end" in result.stdout
    assert "(incomplete read: nothing removed)" in result.stdout
    assert statuses() == {"a@acme.test": "active", "b@acme.test": "active", "c@acme.test": "active"}
    plan = export.plan()
    assert "no line end" in plan.stdout and "suspend" not in plan.stdout.lower()


def test_a_file_whose_last_record_has_no_line_end_is_read_as_incomplete(export):
    assert export.sync(WHOLE).code == 0
    result = export.sync("email,department\na@acme.test,Sales\nb@acme.test,Sales")
    assert "no line end" in result.stdout
    assert statuses()["c@acme.test"] == "active"


def test_an_unclosed_quote_suspends_no_one(export):
    assert export.sync(WHOLE).code == 0
    result = export.sync('email,department\na@acme.test,Sales\nb@acme.test,"Sales\n')
    assert "cannot parse" in result.stdout
    assert set(statuses().values()) == {"active"}


def test_far_fewer_records_than_the_last_complete_read_suspend_no_one_until_a_full_read_accepts_them(export):
    people = [f"p{i}@acme.test" for i in range(200)]
    assert export.sync("email\n" + "".join(f"{p}\n" for p in people)).code == 0
    cut = "email\n" + "".join(f"{p}\n" for p in people[:60])
    result = export.sync(cut)
    assert "the file holds 60 people where the last complete read held 200" in result.stdout
    assert "syncd sync hr --full" in result.stdout
    assert set(statuses().values()) == {"active"}
    again = export.sync(cut)
    assert "held 200" in again.stdout, "an incomplete read keeps the baseline of the last complete one"
    assert set(statuses().values()) == {"active"}
    accepted = export.sync(cut, "--full")
    assert accepted.code == 0 and "problem" not in accepted.stdout
    assert sorted(statuses().values()).count("suspended") == 140


def test_a_nul_in_an_email_makes_the_row_invalid_instead_of_a_new_person(export):
    assert export.sync(WHOLE).code == 0
    result = export.sync("email,department\na@acme.test,Sales\nb\x00@acme.test,Sales\nc@acme.test,Sales\n")
    assert "line 3: email holds the control character U+0000; row skipped" in result.stdout
    assert statuses() == {"a@acme.test": "active", "b@acme.test": "active", "c@acme.test": "active"}


def test_a_short_file_is_still_caught_when_the_periodic_full_read_falls_due(
    store, database_url, write_config, tmp_path
):
    """A day of short exports (each an incomplete read) makes the next scheduled run a full read; that one must still
    compare with the last complete read. Run through the pipeline's entry point with ``now`` a day on, as the
    scheduler calls it (the CLI cannot move the clock)."""
    from datetime import timedelta

    from syncd.admin import shell
    from syncd.clock import utcnow
    from syncd.sync.pipeline import run_source

    config = shell.start(str(write_config(CONFIG.format(url=database_url)))).config
    people = [f"p{i}@acme.test" for i in range(200)]
    (tmp_path / "hr.csv").write_text("email\n" + "".join(f"{p}\n" for p in people), encoding="utf-8")
    start = utcnow()
    assert run_source(config, "hr", now=start).complete
    (tmp_path / "hr.csv").write_text("email\n" + "".join(f"{p}\n" for p in people[:50]), encoding="utf-8")
    later = run_source(config, "hr", now=start + timedelta(hours=25))
    assert not later.complete and any("held 200" in problem for problem in later.problems)
    assert set(statuses().values()) == {"active"}


def test_a_damaged_file_staged_a_few_people_at_a_time_removes_no_one_and_no_membership(export, monkeypatch):
    """Staging takes two people at a time here (``stage.CHUNK``), so the read's verdict is known only after most of
    it is staged: the cut file still suspends no one and drops no one from a group; the whole file then does."""
    from syncd.store.models import DirectoryGroup, GroupMember
    from syncd.sync import stage

    monkeypatch.setattr(stage, "CHUNK", 2)

    def memberships() -> set[tuple[str, str]]:
        query = GroupMember.select(DirectoryGroup.key, GroupMember.member_key).join(DirectoryGroup)
        return set(query.tuples())

    people = [f"p{i}@acme.test" for i in range(7)]
    whole = "email,groups\n" + "".join(f"{p},Staff;Team {i % 2}\n" for i, p in enumerate(people))
    assert export.sync(whole).code == 0
    before = memberships()
    assert ("Team 0", "p0@acme.test") in before and len(before) == 14
    # p0 leaves Team 0, p5 and p6 are gone, and the file is cut inside its last record.
    cut = "email,groups\np0@acme.test,Staff\n" + "".join(f"{p},Staff;Team {i % 2}\n" for i, p in enumerate(people))
    cut = cut.replace("p0@acme.test,Staff;Team 0\n", "").replace(
        "p5@acme.test,Staff;Team 1\np6@acme.test,Staff;Team 0\n", "p5@acme.test,Sta"
    )
    result = export.sync(cut)
    assert result.code == 4 and "no line end" in result.stdout
    assert set(statuses().values()) == {"active"}
    assert memberships() >= before, "an incomplete read removes no membership, even of people it staged early"
    fixed = "email,groups\np0@acme.test,Staff\n" + "".join(
        f"{p},Staff;Team {i % 2}\n" for i, p in enumerate(people[1:5], 1)
    )
    assert export.sync(fixed).code == 0
    after = memberships()
    assert ("Team 0", "p0@acme.test") not in after and ("Staff", "p0@acme.test") in after
    assert not any(member in ("p5@acme.test", "p6@acme.test") for _, member in after)
    assert sorted(statuses().values()).count("suspended") == 2
