"""The audit ledger: list, streamed export, verification that names the first bad entry, and retention."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import peewee
import pytest

from syncd.cli.audit import defuse_formula
from syncd.store.models import LedgerEntry
from syncd.sync import ledger, orgs
from syncd.sync.ledger import GENESIS_HASH, canonical_json, entry_hash

T0 = datetime(2026, 1, 1, 9, 0, 0)


@pytest.fixture
def config_path(write_config, database_url, store):
    return str(write_config(f'[database]\nurl = "{database_url}"\n'))


@pytest.fixture
def org(store):
    """An org whose ledger holds only what the test appends (org.create removed, so seq starts at 1)."""
    created = orgs.create("acme", "Acme", ["acme.com"])
    LedgerEntry.delete().where(LedgerEntry.org == created.id).execute()
    return created


def append_entries(org_id: int, count: int, *, start: datetime = T0, step: timedelta = timedelta(days=1), **fields):
    """Append ``count`` entries one ``step`` apart, continuing the org's chain."""
    chain = ledger.head(org_id)
    rows = []
    for i in range(count):
        values = {
            "actor": "source:hr",
            "action": "member.update",
            "target": f"member:user{chain.seq + 1}@acme.com",
            "before": {"role": "member"},
            "after": {"role": "admin"},
            "reason": f"change {chain.seq + 1}",
            **fields,
        }
        rows.append(ledger.make_entry(org_id, chain, at=start + step * i, **values))
    ledger.insert_rows(rows)
    return rows


def set_field(org_id: int, seq: int, **values):
    LedgerEntry.update(**values).where(LedgerEntry.org == org_id, LedgerEntry.seq == seq).execute()


def test_intact_chain_verifies_with_count_and_head(cli, config_path, org):
    rows = append_entries(org.id, 5)
    text = cli("--config", config_path, "audit", "verify", "--org", "acme")
    assert text.code == 0, text.stderr
    assert f"intact: 5 entries (seq 1..5); head 5:{rows[-1]['hash']}" in text.stdout
    answer = cli("--config", config_path, "audit", "verify", "--org", "acme", "--format", "json")
    document = json.loads(answer.stdout)
    assert answer.code == 0 and document["ok"] and document["checked"] == 5 and document["head_seq"] == 5
    assert document["head_hash"] == rows[-1]["hash"] and document["bad_seq"] is None


def test_verify_exits_1_naming_the_edited_entry(cli, config_path, org):
    append_entries(org.id, 6)
    set_field(org.id, 4, reason="nothing to see")
    result = cli("--config", config_path, "audit", "verify", "--org", "acme")
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "seq 4: hash does not match" in result.stderr
    answer = cli("--config", config_path, "audit", "verify", "--org", "acme", "--format", "json")
    assert answer.code == 1 and json.loads(answer.stdout)["bad_seq"] == 4


def test_verify_names_a_deleted_entry_by_its_missing_seq(org):
    append_entries(org.id, 6)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq == 3).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 3


def test_truncated_newest_entries_are_caught_against_a_recorded_head(cli, config_path, org):
    rows = append_entries(org.id, 6)
    head = f"6:{rows[-1]['hash']}"
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq >= 5).execute()
    result = cli("--config", config_path, "audit", "verify", "--org", "acme", "--expect-head", head)
    assert result.code == 1 and "seq 5: the chain ends at seq 4 but head 6 was recorded" in result.stderr


def test_a_recorded_head_whose_hash_changed_is_caught(org):
    rows = append_entries(org.id, 3)
    chain = ledger.head(org.id)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq == 3).execute()
    chain = ledger.LedgerHead(2, rows[1]["hash"])
    LedgerEntry.insert(**ledger.make_entry(org.id, chain, actor="x", action="y", target="z", at=T0)).execute()
    result = ledger.verify(org.id, (3, rows[2]["hash"]))
    assert not result.ok and result.bad_seq == 3 and "recorded head hash" in result.problem
    assert ledger.verify(org.id).ok


def test_expect_head_must_look_like_seq_and_hash(cli, config_path, org):
    result = cli("--config", config_path, "audit", "verify", "--org", "acme", "--expect-head", "5")
    assert result.code == 1 and "--expect-head: expected SEQ:HASH" in result.stderr


def exported(cli, config_path, *args):
    result = cli("--config", config_path, "audit", "export", "--org", "acme", *args)
    assert result.code == 0, result.stderr
    return result.stdout


def test_jsonl_export_has_every_field_and_verifies_on_its_own(cli, config_path, org):
    append_entries(org.id, 4, after={"role": "admin", "teams": [{"team": "ops", "role": "member"}]})
    lines = exported(cli, config_path, "--format", "jsonl").splitlines()
    documents = [json.loads(line) for line in lines]
    assert [d["seq"] for d in documents] == [1, 2, 3, 4]
    assert set(documents[0]) == {
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "before",
        "after",
        "reason",
        "prev_hash",
        "hash",
    }
    assert documents[0]["after"] == {"role": "admin", "teams": [{"team": "ops", "role": "member"}]}
    assert documents[0]["at"] == "2026-01-01T09:00:00.000000Z" and documents[0]["prev_hash"] == GENESIS_HASH
    entries = [ledger.entry_from_document(d) for d in documents]
    assert ledger.verify_entries(entries, []).ok


def test_json_export_is_one_array_of_the_same_entries(cli, config_path, org):
    append_entries(org.id, 3)
    array = json.loads(exported(cli, config_path, "--format", "json"))
    lines = [json.loads(line) for line in exported(cli, config_path, "--format", "jsonl").splitlines()]
    assert array == lines and len(array) == 3


def test_empty_json_export_is_an_empty_array(cli, config_path, org):
    assert json.loads(exported(cli, config_path, "--format", "json")) == []


def test_csv_export_defuses_cells_a_spreadsheet_would_run(cli, config_path, org):
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd"]
    for i, text in enumerate(hostile):
        append_entries(org.id, 1, start=T0 + timedelta(hours=i), actor=text, reason=text, target="member:" + text)
    append_entries(org.id, 1, start=T0 + timedelta(days=1), reason='ordinary, with "quotes"')
    rows = list(csv.reader(io.StringIO(exported(cli, config_path, "--format", "csv"))))
    header, body = rows[0], rows[1:]
    assert header == ["seq", "at", "actor", "action", "target", "before", "after", "reason", "prev_hash", "hash"]
    for row, text in zip(body, hostile, strict=False):
        assert row[2] == "'" + text and row[7] == "'" + text and row[4] == "member:" + text
    assert body[-1][7] == 'ordinary, with "quotes"' and body[-1][0] == "7"
    assert body[0][5] == '{"role":"member"}'


def test_defuse_formula_leaves_ordinary_text_alone():
    assert defuse_formula("alice@acme.com") == "alice@acme.com"
    assert defuse_formula("") == ""
    assert defuse_formula("=1") == "'=1"


def test_since_and_until_select_by_time_and_a_bare_until_date_includes_its_day(cli, config_path, org):
    append_entries(org.id, 6, start=datetime(2026, 3, 1, 12, 0), step=timedelta(hours=12))
    picked = json.loads(
        exported(cli, config_path, "--format", "json", "--since", "2026-03-02", "--until", "2026-03-02")
    )
    assert [d["seq"] for d in picked] == [2, 3]
    timed = json.loads(
        exported(
            cli, config_path, "--format", "json", "--since", "2026-03-02T13:00:00+01:00", "--until", "2026-03-03T12:00Z"
        )
    )
    assert [d["seq"] for d in timed] == [3, 4]


def test_a_bad_time_is_one_line_naming_the_flag(cli, config_path, org):
    result = cli("--config", config_path, "audit", "list", "--org", "acme", "--since", "yesterday")
    assert result.code == 1 and "--since: 'yesterday' is not an ISO 8601 date or time" in result.stderr


def test_list_filters_by_actor_action_and_target_with_prefixes(cli, config_path, org):
    append_entries(org.id, 2, actor="source:hr", action="member.join")
    append_entries(org.id, 2, actor="admin:cli", action="member.role", target="member:alice@acme.com")
    append_entries(org.id, 1, actor="source:ldap", action="team.create", target="team:ops")

    def seqs(*filters):
        result = cli("--config", config_path, "audit", "list", "--org", "acme", "--format", "json", *filters)
        assert result.code == 0, result.stderr
        return [d["seq"] for d in json.loads(result.stdout)]

    assert seqs("--actor", "admin:cli") == [3, 4]
    assert seqs("--actor", "source:*") == [1, 2, 5]
    assert seqs("--action", "member.*", "--target", "member:alice@acme.com") == [3, 4]
    assert seqs("--target", "team:*") == [5]
    assert seqs("--actor", "source_*") == []
    assert seqs("--last", "2") == [4, 5]
    assert seqs("--actor", "source:*", "--last", "2") == [2, 5]


def test_list_text_has_one_line_per_entry_with_who_what_and_why(cli, config_path, org):
    append_entries(org.id, 2, actor="admin:cli", action="member.role", reason="promoted by the CTO")
    result = cli("--config", config_path, "audit", "list", "--org", "acme")
    lines = result.stdout.splitlines()
    assert result.code == 0 and len(lines) == 3 and lines[0].split()[:3] == ["SEQ", "AT", "ACTOR"]
    assert "admin:cli" in lines[2] and "member.role" in lines[2] and lines[2].endswith("promoted by the CTO")


def test_list_text_shows_control_characters_escaped_so_an_entry_stays_one_line(cli, config_path, org):
    append_entries(org.id, 1, target="member:\x1b]0;pwned\x07x@acme.com", reason="line one\nline two")
    result = cli("--config", config_path, "audit", "list", "--org", "acme")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "\x1b" not in result.stdout
    assert "member:\\x1b]0;pwned\\x07x@acme.com" in lines[1] and lines[1].endswith("line one\\nline two")


def test_stream_pages_through_every_entry_in_order(org):
    append_entries(org.id, 10)
    assert [e.seq for e in ledger.stream(org.id, ledger.select_entries(org.id), batch=3)] == list(range(1, 11))
    assert [e.seq for e in ledger.stream(org.id, ledger.select_entries(org.id), batch=5)] == list(range(1, 11))


def test_a_huge_seq_gap_costs_one_probe_and_is_reported(org):
    append_entries(org.id, 4)
    LedgerEntry.update(seq=10**15).where(LedgerEntry.org == org.id, LedgerEntry.seq == 4).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 4 and f"found {10**15}" in result.problem


def test_an_entry_inserted_before_the_first_is_named(org):
    append_entries(org.id, 2)
    forged = ledger.make_entry(org.id, ledger.LedgerHead(-1, GENESIS_HASH), actor="x", action="y", target="z", at=T0)
    LedgerEntry.insert(**forged).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 0


def test_export_to_a_file_writes_it_whole(cli, config_path, org, tmp_path):
    append_entries(org.id, 3)
    target = tmp_path / "ledger.jsonl"
    assert exported(cli, config_path, "--format", "jsonl", "--output", str(target)) == ""
    assert len(target.read_text(encoding="utf-8").splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ledger")] == []
    missing = cli("--config", config_path, "audit", "export", "--org", "acme", "--output", str(tmp_path / "no/x"))
    assert missing.code == 1 and "cannot write there" in missing.stderr


def test_an_org_sees_only_its_own_ledger(cli, config_path, org):
    other = orgs.create("globex", "Globex")
    append_entries(org.id, 2)
    append_entries(other.id, 3, actor="admin:globex")
    documents = json.loads(exported(cli, config_path, "--format", "json"))
    assert len(documents) == 2 and all(d["actor"] == "source:hr" for d in documents)
    assert ledger.verify(org.id).ok and ledger.verify(other.id).ok


# Retention


def test_prune_deletes_old_entries_behind_a_checkpoint_and_the_chain_still_verifies(cli, config_path, org):
    rows = append_entries(org.id, 8)
    result = cli("--config", config_path, "audit", "prune", "--org", "acme", "--before", "2026-01-05")
    assert result.code == 0, result.stderr
    assert "pruned 4 entries (through seq 4) behind checkpoint seq 9" in result.stdout
    remaining = list(ledger.stream(org.id, ledger.select_entries(org.id)))
    assert [e.seq for e in remaining] == [5, 6, 7, 8, 9]
    checkpoint = ledger.anchor_of(remaining[-1])
    assert checkpoint is not None and (checkpoint.through_seq, checkpoint.through_hash) == (4, rows[3]["hash"])
    verified = ledger.verify(org.id)
    assert verified.ok and (verified.first_seq, verified.checked) == (5, 5)
    assert cli("--config", config_path, "audit", "verify", "--org", "acme").code == 0


def test_pruning_twice_and_pruning_everything_still_verify(org):
    append_entries(org.id, 6)
    assert ledger.prune(org.id, T0 + timedelta(days=2)).pruned == 2
    append_entries(org.id, 2, start=T0 + timedelta(days=10))
    second = ledger.prune(org.id, T0 + timedelta(days=365), now=T0 + timedelta(days=400))
    assert second.pruned == 7 and second.through_seq == 9
    result = ledger.verify(org.id)
    assert result.ok and result.first_seq == 10 and result.checked == 1
    assert ledger.prune(org.id, T0).pruned == 0


def test_prune_with_nothing_older_changes_nothing(cli, config_path, org):
    append_entries(org.id, 3)
    result = cli("--config", config_path, "audit", "prune", "--org", "acme", "--before", "2025-12-31")
    assert result.code == 0 and "nothing pruned" in result.stdout
    assert ledger.head(org.id).seq == 3


def test_prune_refuses_a_chain_that_does_not_verify(cli, config_path, org):
    append_entries(org.id, 5)
    set_field(org.id, 2, actor="someone else")
    result = cli("--config", config_path, "audit", "prune", "--org", "acme", "--before", "2026-02-01")
    assert result.code == 1 and "seq 2" in result.stderr and "not pruning" in result.stderr
    assert LedgerEntry.select().where(LedgerEntry.org == org.id).count() == 5


def test_deleting_the_first_entries_without_a_checkpoint_fails_verification(org):
    append_entries(org.id, 6)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq <= 3).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 1 and "entries 1..3 are missing" in result.problem


def test_deleting_more_than_the_checkpoint_pruned_names_the_first_missing_entry(org):
    append_entries(org.id, 8)
    ledger.prune(org.id, T0 + timedelta(days=3))
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq <= 5).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 4 and "entries 4..5 are missing" in result.problem


def forged_checkpoint(org_id: int, seq: int, prev_hash: str, through: int, through_hash: str) -> dict:
    chain = ledger.LedgerHead(seq - 1, prev_hash)
    return ledger.make_entry(
        org_id,
        chain,
        actor="admin:cli",
        action=ledger.CHECKPOINT_ACTION,
        target=ledger.CHECKPOINT_TARGET,
        after={"pruned_through_seq": through, "pruned_through_hash": through_hash, "carried": {}},
        at=T0,
    )


def test_a_forged_checkpoint_in_the_middle_fails_verification(org):
    rows = append_entries(org.id, 8)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq <= 3).execute()
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq == 6).execute()
    LedgerEntry.insert(**forged_checkpoint(org.id, 6, rows[4]["hash"], 3, rows[2]["hash"])).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 7 and "prev_hash" in result.problem


def test_a_forged_checkpoint_at_the_start_fails_verification(org):
    rows = append_entries(org.id, 8)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq <= 4).execute()
    LedgerEntry.insert(**forged_checkpoint(org.id, 4, rows[2]["hash"], 3, rows[2]["hash"])).execute()
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 5


def test_an_edited_checkpoint_fails_verification(org):
    append_entries(org.id, 5)
    result = ledger.prune(org.id, T0 + timedelta(days=2))
    row = LedgerEntry.get(LedgerEntry.org == org.id, LedgerEntry.seq == result.checkpoint_seq)
    after = json.loads(row.after)
    after["pruned_entries"] = 0
    set_field(org.id, result.checkpoint_seq, after=canonical_json(after))
    checked = ledger.verify(org.id)
    assert not checked.ok and checked.bad_seq == result.checkpoint_seq


def test_a_pruned_chain_whose_first_link_was_edited_names_that_entry(org):
    append_entries(org.id, 5)
    ledger.prune(org.id, T0 + timedelta(days=2))
    set_field(org.id, 3, prev_hash="f" * 64)
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 3 and "checkpoint 6 pruned" in result.problem


def test_first_entry_must_link_to_the_genesis_hash(org):
    append_entries(org.id, 2)
    set_field(org.id, 1, prev_hash="a" * 64)
    result = ledger.verify(org.id)
    assert not result.ok and result.bad_seq == 1


def test_entry_hash_format_is_unchanged():
    digest = entry_hash(
        seq=1,
        at=T0,
        actor="admin:cli",
        action="org.create",
        target="org:acme",
        before=None,
        after='{"slug":"acme"}',
        reason="created",
        prev_hash=GENESIS_HASH,
    )
    body = (
        '{"action":"org.create","actor":"admin:cli","after":"{\\"slug\\":\\"acme\\"}",'
        '"at":"2026-01-01T09:00:00.000000Z","before":null,"prev_hash":"' + GENESIS_HASH + '",'
        '"reason":"created","seq":1,"target":"org:acme"}'
    )
    assert digest == hashlib.sha256(body.encode("utf-8")).hexdigest()


def test_an_export_file_verifies_offline_with_the_same_head_as_the_database(cli, config_path, org, tmp_path):
    append_entries(org.id, 6)
    ledger.prune(org.id, T0 + timedelta(days=2))
    for fmt in ("jsonl", "json"):
        path = tmp_path / f"ledger.{fmt}"
        exported(cli, config_path, "--format", fmt, "--output", str(path))
        offline = cli("audit", "verify", "--file", str(path), "--format", "json")
        online = cli("--config", config_path, "audit", "verify", "--org", "acme", "--format", "json")
        assert offline.code == 0, offline.stderr
        mine, theirs = json.loads(offline.stdout), json.loads(online.stdout)
        assert (mine["head_seq"], mine["head_hash"], mine["first_seq"]) == (
            theirs["head_seq"],
            theirs["head_hash"],
            theirs["first_seq"],
        )


def test_an_edited_export_file_fails_offline_verification_naming_the_entry(cli, config_path, org, tmp_path):
    append_entries(org.id, 5)
    path = tmp_path / "ledger.jsonl"
    exported(cli, config_path, "--format", "jsonl", "--output", str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    edited = json.loads(lines[2])
    edited["after"] = {"role": "owner"}
    lines[2] = json.dumps(edited)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("audit", "verify", "--file", str(path))
    assert result.code == 1 and f"export {path}: seq 3: hash does not match" in result.stderr


def test_a_time_window_export_cannot_vouch_for_the_whole_chain(cli, config_path, org, tmp_path):
    append_entries(org.id, 5)
    path = tmp_path / "window.jsonl"
    exported(cli, config_path, "--format", "jsonl", "--since", "2026-01-03", "--output", str(path))
    result = cli("audit", "verify", "--file", str(path))
    assert result.code == 1 and "seq 1: entries 1..2 are missing" in result.stderr


def test_a_file_that_is_not_an_export_is_one_line_error(cli, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"seq": 1}\n', encoding="utf-8")
    result = cli("audit", "verify", "--file", str(path))
    assert result.code == 1 and "entry 1: not a ledger entry" in result.stderr
    missing = cli("audit", "verify", "--file", str(tmp_path / "none.jsonl"))
    assert missing.code == 1 and "cannot read it" in missing.stderr


def test_prune_refuses_a_moment_in_the_future(cli, config_path, org):
    append_entries(org.id, 2)
    result = cli("--config", config_path, "audit", "prune", "--org", "acme", "--before", "2999-01-01")
    assert result.code == 1 and "is in the future" in result.stderr
    assert ledger.head(org.id).seq == 2


def test_an_entry_is_never_stamped_earlier_than_its_predecessor(org):
    append_entries(org.id, 1, start=T0 + timedelta(hours=1))
    chain = ledger.head(org.id)
    late = ledger.make_entry(org.id, chain, actor="source:hr", action="member.join", target="member:x", at=T0)
    LedgerEntry.insert(**late).execute()
    assert late["at"] == T0 + timedelta(hours=1)
    assert ledger.verify(org.id).ok


def test_an_entry_whose_time_was_edited_to_text_is_named_in_one_line(cli, config_path, org):
    append_entries(org.id, 3)
    LedgerEntry.update(at=peewee.SQL("'yesterday'")).where(LedgerEntry.org == org.id, LedgerEntry.seq == 2).execute()
    result = cli("--config", config_path, "audit", "verify", "--org", "acme")
    assert result.code == 1 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    if "sqlite" in Path(config_path).read_text():
        assert "seq 2: time is not a timestamp" in result.stderr
    else:  # PostgreSQL reads 'yesterday' as a timestamp: the hash no longer matches
        assert "seq 2: hash does not match" in result.stderr


def test_a_rewritten_head_is_named_once_by_its_seq(cli, config_path, org):
    rows = append_entries(org.id, 3)
    LedgerEntry.delete().where(LedgerEntry.org == org.id, LedgerEntry.seq == 3).execute()
    chain = ledger.LedgerHead(2, rows[1]["hash"])
    LedgerEntry.insert(**ledger.make_entry(org.id, chain, actor="x", action="y", target="z", at=T0)).execute()
    result = cli("--config", config_path, "audit", "verify", "--org", "acme", "--expect-head", f"3:{rows[2]['hash']}")
    assert result.code == 1 and result.stderr.count("seq 3") == 1, result.stderr


def test_a_csv_export_is_refused_saying_only_json_exports_verify(cli, config_path, org, tmp_path):
    append_entries(org.id, 2)
    path = tmp_path / "audit.csv"
    cli("--config", config_path, "audit", "export", "--org", "acme", "--format", "csv", "--output", str(path))
    result = cli("audit", "verify", "--file", str(path))
    assert result.code == 1 and "only 'syncd audit export --format jsonl' (or json)" in result.stderr
