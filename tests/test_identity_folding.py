"""One identity folding (syncd/domain/folding.py) for match keys and stored identifiers, and the migration that
re-folds a store written with the old one (lower case alone), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from connectors.interface import GroupRecord, UserRecord
from syncd.admin.members import listing
from syncd.clock import utcnow
from syncd.config import SourceSettings
from syncd.domain import matching
from syncd.domain.folding import fold
from syncd.store.migrations import MIGRATIONS, SchemaVersion, _one_identity_folding, upgrade
from syncd.store.models import (
    DirectoryGroup,
    HeldRemoval,
    Identity,
    LedgerEntry,
    Member,
    OutboxEvent,
    PlanBasis,
    Source,
)
from syncd.store.models import Plan as PlanRow
from syncd.sync import ledger, pipeline, stage
from tests.directory import declare, make_config, snapshot

NOW = utcnow()
JOSE = "Jos\u00e9@acme.com"  # composed: é is U+00E9
JOSE_NFD = unicodedata.normalize("NFD", JOSE)  # e + U+0301
ZOE_NFD = unicodedata.normalize("NFD", "Zo\u00eb@acme.com")
TEAM_NFD = unicodedata.normalize("NFD", "\u00c9quipe")


def test_match_keys_fold_composed_and_decomposed_spellings_together():
    keys = {
        matching.match_key("email", user_name="x", email=v, external_id=None)
        for v in (JOSE, JOSE_NFD, " JOSÉ@acme.com ")
    }
    assert keys == {"jos\u00e9@acme.com"}


@given(st.text())
def test_folding_is_idempotent_and_refolds_a_lower_cased_value_to_the_same_key(text):
    """What the migration relies on: a value folded by lower case alone re-folds to the fold of the original."""
    assert fold(fold(text)) == fold(text)
    assert fold(text.lower()) == fold(text)


def _person(key: str, email: str) -> UserRecord:
    return UserRecord(key=key, user_name=key, email=email, display_name=key.title(), active=True, groups=(TEAM_NFD,))


def _old_store(config, monkeypatch) -> None:
    """Two sources read under the old folding: match keys by ``strip().lower()`` and staged ``*_lower`` columns by
    ``lower()`` (what syncd wrote before the one folding; the folding is the part replaced, the store is real)."""
    with monkeypatch.context() as old:
        old.setattr(matching, "fold_key", lambda value: value.strip().lower())
        old.setattr(stage, "fold", lambda value: None if value is None else value.lower())
        group = (GroupRecord(key="g-team", display_name=TEAM_NFD),)
        pipeline.apply_read(config, "hr", snapshot(_person("k-jose", JOSE), groups=group), now=NOW)
        read = snapshot(_person("k-jose-idp", JOSE_NFD), _person("k-zoe", ZOE_NFD), groups=group)
        pipeline.apply_read(config, "idp", read, now=NOW)


def test_the_migration_refolds_an_old_store_and_keeps_members_that_now_fold_together_apart(
    store, database_url, monkeypatch, caplog
):
    base = make_config(database_url)
    idp = SourceSettings(name="idp", org="acme", kind="file", precedence=5, connector=None)
    config = declare(replace(base, sources=(*base.sources, idp)))
    _old_store(config, monkeypatch)
    assert sorted(Member.select(Member.match_key).tuples()) == sorted(
        [(JOSE.lower(),), (JOSE_NFD.lower(),), (ZOE_NFD.lower(),)]
    ), "the old folding made the same person two members"
    entries = LedgerEntry.select().count()
    org = Member.get().org_id

    number = MIGRATIONS.index(_one_identity_folding) + 1
    SchemaVersion.delete().where(SchemaVersion.version >= number).execute()
    with caplog.at_level(logging.WARNING, logger="syncd.migrations"):
        assert upgrade() == list(range(number, len(MIGRATIONS) + 1))

    jose, zoe = "jos\u00e9@acme.com", "zo\u00eb@acme.com"
    assert {key for (key,) in Identity.select(Identity.match_key).tuples()} == {jose, zoe}
    assert {m.match_key: m.status for m in Member.select()} == {
        jose: "active",
        JOSE_NFD.lower(): "active",
        zoe: "active",
    }
    assert {i.email_lower for i in Identity.select()} == {jose, zoe}
    assert {i.user_name_lower for i in Identity.select()} == {"k-jose", "k-jose-idp", "k-zoe"}
    assert {g.display_name_lower for g in DirectoryGroup.select()} == {"\u00e9quipe"}
    assert OutboxEvent.select().where(OutboxEvent.order_key == f"member:{zoe}").count() == 1
    (warning,) = [r for r in caplog.records if r.getMessage() == "store.migration.members_fold_together"]
    assert warning.syncd_fields["org"] == "acme" and warning.syncd_fields["apart"] == [JOSE_NFD.lower()]
    assert warning.syncd_fields["kept"] == jose
    assert not PlanBasis.select().where(PlanBasis.org == org).exists(), "the next run plans the whole org"
    assert LedgerEntry.select().count() == entries and ledger.verify(org).ok, "past entries are never rewritten"

    before = sorted(Member.select(Member.id, Member.match_key).tuples()), sorted(Identity.select().tuples())
    _one_identity_folding(store)
    assert (sorted(Member.select(Member.id, Member.match_key).tuples()), sorted(Identity.select().tuples())) == before

    # The next run of either source plans the whole org: the member kept apart is suspended, ledgered with why.
    read = snapshot(_person("k-jose-idp", JOSE_NFD), _person("k-zoe", ZOE_NFD), cursor="c2")
    pipeline.apply_read(config, "idp", read, now=NOW)
    assert {m.match_key: m.status for m in Member.select()} == {
        jose: "active",
        JOSE_NFD.lower(): "suspended",
        zoe: "active",
    }
    suspended = LedgerEntry.get(LedgerEntry.action == "member.suspend")
    assert suspended.target == f"member:{JOSE_NFD.lower()}" and "no source asserts them" in suspended.reason
    by_key = {row["match_key"]: row for row in listing(Member.get(Member.match_key == jose).org)}
    assert by_key[jose]["sources"] == ["hr", "idp"] and by_key[zoe]["sources"] == ["idp"]
    assert ledger.verify(org).ok


def test_without_a_member_on_the_folded_key_the_oldest_takes_it_and_held_removals_follow_their_members(
    store, database_url
):
    """Two spellings that both differ from the folded key (combining marks in either order): the older member
    takes the folded key, the younger keeps its own; a held removal moves with its member only."""
    declare(make_config(database_url))
    org = Source.get(Source.name == "hr").org_id
    canonical, swapped = "s\u0323\u0307@acme.com", "s\u0307\u0323@acme.com"  # both fold to "\u1e69@acme.com"
    elder = Member.create(org=org, match_key=canonical, created_at=NOW, updated_at=NOW)
    younger = Member.create(org=org, match_key=swapped, created_at=NOW, updated_at=NOW)
    plan = PlanRow.create(id="p-1", org=org, created_at=NOW, status="held", fingerprint="f")
    for key in (canonical, swapped):
        HeldRemoval.create(org=org, plan=plan, match_key=key, created_at=NOW)

    _one_identity_folding(store)

    assert Member.get_by_id(elder.id).match_key == "\u1e69@acme.com"
    assert Member.get_by_id(younger.id).match_key == swapped
    assert sorted(k for (k,) in HeldRemoval.select(HeldRemoval.match_key).tuples()) == sorted(
        ["\u1e69@acme.com", swapped]
    )
