"""Property: ``audit verify`` catches every single-entry mutation of a generated chain, naming the entry.

Chains are written to the real store (SQLite and PostgreSQL) and mutated with SQL, as someone with database access
would: an edit of any field, a deletion, an insertion (renumbering what follows), or a swap of two entries.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.store.models import LedgerEntry, Organization
from syncd.sync import ledger, orgs
from syncd.sync.ledger import canonical_json

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
JSON_VALUES = st.none() | st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=4), st.integers() | TEXT | st.booleans(), max_size=3
)
ENTRY = st.fixed_dictionaries(
    {
        "actor": st.sampled_from(["source:hr", "token:3", "admin:cli", "system:grace"]),
        "action": st.sampled_from(["member.join", "member.role", "team.join", "org.update"]),
        "target": TEXT.map(lambda t: "member:" + t),
        "before": JSON_VALUES,
        "after": JSON_VALUES,
        "reason": TEXT,
    }
)
FIELDS = ("seq", "at", "actor", "action", "target", "before", "after", "reason", "prev_hash", "hash")
START = datetime(2026, 5, 1, 8, 30, 0, 123456)


def write_chain(org_id: int, specs: list[dict], gaps: list[int]) -> list[dict]:
    LedgerEntry.delete().where(LedgerEntry.org == org_id).execute()
    chain = ledger.LedgerHead(0, ledger.GENESIS_HASH)
    moment, rows = START, []
    for spec, gap in zip(specs, gaps, strict=True):
        moment += timedelta(microseconds=gap)
        rows.append(ledger.make_entry(org_id, chain, at=moment, **spec))
    ledger.insert_rows(rows)
    return rows


def renumber_from(org_id: int, seq: int, by: int) -> None:
    """Shift seq of entries at or after ``seq`` without tripping the unique (org, seq) index mid-statement."""
    where = (LedgerEntry.org == org_id) & (LedgerEntry.seq >= seq)
    LedgerEntry.update(seq=(LedgerEntry.seq + by) * -1).where(where).execute()
    LedgerEntry.update(seq=LedgerEntry.seq * -1).where((LedgerEntry.org == org_id) & (LedgerEntry.seq < 0)).execute()


def edited_value(data: st.DataObject, row: dict, name: str, length: int):
    old = row[name]
    if name == "seq":
        return data.draw(st.integers(length + 1, length + 1000), label="new seq")
    if name == "at":
        shift = data.draw(st.integers(1, 10**9), label="microseconds")
        return old + timedelta(microseconds=shift if data.draw(st.booleans(), label="later") else -shift)
    if name in ("prev_hash", "hash"):
        return data.draw(st.binary(min_size=32, max_size=32).map(bytes.hex).filter(lambda h: h != old))
    if name in ("before", "after"):
        return data.draw(JSON_VALUES.map(canonical_json).filter(lambda v: v != old), label=name)
    return data.draw(TEXT.filter(lambda t: t != old), label=name)


def stored_rows(org_id: int) -> list[dict]:
    return [
        row.__data__ | {"org": org_id}
        for row in LedgerEntry.select().where(LedgerEntry.org == org_id).order_by(LedgerEntry.seq)
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.parametrize("prune_first", [False, True], ids=["whole", "pruned"])
@given(data=st.data())
def test_verify_catches_every_single_entry_mutation(store, prune_first, data):
    """Also on chains already pruned behind a checkpoint, where the checkpoint itself is a target too."""
    org = Organization.get_or_none(Organization.slug == "prop") or orgs.create("prop", "Property")
    specs = data.draw(st.lists(ENTRY, min_size=2 if prune_first else 1, max_size=8), label="entries")
    gaps = data.draw(st.lists(st.integers(1, 10**8), min_size=len(specs), max_size=len(specs)), label="gaps")
    written = write_chain(org.id, specs, gaps)
    pruned = prune_first
    checkpoint_seq = None
    if pruned:
        keep_from = data.draw(st.integers(1, len(written) - 1), label="first kept index")
        result = ledger.prune(org.id, written[keep_from]["at"], now=written[-1]["at"] + timedelta(seconds=1))
        checkpoint_seq = result.checkpoint_seq
    rows = stored_rows(org.id)
    by_seq = {row["seq"]: row for row in rows}
    seqs = [row["seq"] for row in rows]
    first_seq, last_seq = seqs[0], seqs[-1]
    head = (last_seq, rows[-1]["hash"])
    assert ledger.verify(org.id, head).ok

    kind = data.draw(
        st.sampled_from(["edit", "delete", "insert", "swap"] if len(rows) > 1 else ["edit", "delete", "insert"])
    )
    where_org = LedgerEntry.org == org.id
    breaks_anchor = False
    if kind == "edit":
        position = data.draw(st.sampled_from(seqs), label="position")
        name = data.draw(st.sampled_from(FIELDS), label="field")
        value = edited_value(data, by_seq[position], name, last_seq)
        LedgerEntry.update({getattr(LedgerEntry, name): value}).where(where_org, LedgerEntry.seq == position).execute()
        expected = position
        breaks_anchor = position == checkpoint_seq and name in ("action", "target", "after")
    elif kind == "delete":
        position = data.draw(st.sampled_from(seqs), label="position")
        LedgerEntry.delete().where(where_org, LedgerEntry.seq == position).execute()
        expected = position
        breaks_anchor = position == checkpoint_seq
    elif kind == "insert":
        position = data.draw(st.integers(first_seq, last_seq + 1), label="position")
        forge_hash = data.draw(st.booleans(), label="attacker computes a valid hash")
        renumber_from(org.id, position, 1)
        prev = by_seq[position]["prev_hash"] if position <= last_seq else by_seq[last_seq]["hash"]
        at = by_seq[min(position, last_seq)]["at"]
        forged = ledger.make_entry(org.id, ledger.LedgerHead(position - 1, prev), at=at, **data.draw(ENTRY))
        if not forge_hash or position == last_seq + 1:
            forged["hash"] = secrets.token_hex(32)
        LedgerEntry.insert(**forged).execute()
        expected = position + 1 if forge_hash and position <= last_seq else position
    else:
        first, second = sorted(data.draw(st.lists(st.sampled_from(seqs), min_size=2, max_size=2, unique=True)))
        LedgerEntry.update(seq=-1).where(where_org, LedgerEntry.seq == first).execute()
        LedgerEntry.update(seq=first).where(where_org, LedgerEntry.seq == second).execute()
        LedgerEntry.update(seq=second).where(where_org, LedgerEntry.seq == -1).execute()
        expected = first
    if breaks_anchor:
        expected = 1
    event(f"{kind} {'pruned chain' if pruned else 'whole chain'}{' at its checkpoint' if breaks_anchor else ''}")

    anchored = ledger.verify(org.id, head)
    assert not anchored.ok and anchored.bad_seq == expected, anchored
    plain = ledger.verify(org.id)
    if kind == "delete" and position == last_seq and not pruned:
        assert plain.ok, "removing the newest entry is only visible against a recorded head"
    else:
        assert not plain.ok and plain.bad_seq == expected, plain
