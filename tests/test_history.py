"""Who had which role when: ``members_at`` reads member states back from hand-made ledger entries."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.admin import history
from syncd.admin.history import HistoryError, members_at, parse_moment
from syncd.store.models import LedgerEntry
from syncd.sync import ledger, orgs

DAY = timedelta(days=1)
T0 = datetime(2026, 2, 1, 9, 0)


def state(email, role="member", status="active", teams=(), pinned=False, **extra):
    return {
        "email": email,
        "user_name": email,
        "display_name": email.split("@")[0].title(),
        "status": status,
        "role": role,
        "pinned": pinned,
        "teams": [{"team": t, "role": r} for t, r in teams],
        **extra,
    }


@pytest.fixture
def org(store):
    created = orgs.create("acme", "Acme", ["acme.com"])
    LedgerEntry.delete().where(LedgerEntry.org == created.id).execute()
    return created


def record(org_id, at, action, target, before, after, actor="source:hr", reason=""):
    ledger.insert_rows(
        [
            ledger.make_entry(
                org_id,
                ledger.head(org_id),
                actor=actor,
                action=action,
                target=target,
                before=before,
                after=after,
                reason=reason,
                at=at,
            )
        ]
    )


@pytest.fixture
def story(org):
    """Alice joins, Bob joins, Alice becomes admin, joins ops, Bob is suspended then deprovisioned."""
    alice, bob = "member:alice@acme.com", "member:bob@acme.com"
    record(org.id, T0, "member.join", alice, None, state("alice@acme.com"))
    record(org.id, T0 + DAY, "member.join", bob, None, state("bob@acme.com"))
    record(org.id, T0 + DAY, "team.create", "team:ops", None, {"slug": "ops"})
    record(
        org.id,
        T0 + 2 * DAY,
        "member.role",
        alice,
        state("alice@acme.com"),
        state("alice@acme.com", "admin"),
        actor="admin:cli",
    )
    record(
        org.id,
        T0 + 3 * DAY,
        "team.join",
        alice,
        state("alice@acme.com", "admin"),
        state("alice@acme.com", "admin", teams=[("ops", "maintainer")]),
    )
    record(
        org.id, T0 + 4 * DAY, "member.suspend", bob, state("bob@acme.com"), state("bob@acme.com", status="suspended")
    )
    record(
        org.id,
        T0 + 34 * DAY,
        "member.deprovision",
        bob,
        state("bob@acme.com", status="suspended"),
        state("bob@acme.com", status="deprovisioned"),
        actor="system:grace",
    )
    return org


def roles(members):
    return {m["email"]: (m["role"], m["status"]) for m in members}


def test_before_anyone_joined_there_are_no_members(story):
    assert members_at(story.id, T0 - timedelta(seconds=1)) == []


def test_each_moment_shows_the_latest_state_at_or_before_it(story):
    assert roles(members_at(story.id, T0)) == {"alice@acme.com": ("member", "active")}
    assert roles(members_at(story.id, T0 + DAY)) == {
        "alice@acme.com": ("member", "active"),
        "bob@acme.com": ("member", "active"),
    }
    assert roles(members_at(story.id, T0 + 2 * DAY + timedelta(hours=1)))["alice@acme.com"] == ("admin", "active")
    later = members_at(story.id, T0 + 5 * DAY)
    assert roles(later) == {"alice@acme.com": ("admin", "active"), "bob@acme.com": ("member", "suspended")}
    assert roles(members_at(story.id, T0 + 40 * DAY))["bob@acme.com"] == ("member", "deprovisioned")


def test_answers_have_the_shape_of_members_list_json(story):
    alice = members_at(story.id, T0 + 10 * DAY)[0]
    assert alice == {
        "email": "alice@acme.com",
        "user_name": "alice@acme.com",
        "display_name": "Alice",
        "status": "active",
        "role": "admin",
        "teams": [{"team": "ops", "role": "maintainer"}],
        "sources": [],
        "pinned": False,
        "manager": None,
    }


def test_sources_are_kept_when_the_recorded_state_names_them(org):
    record(org.id, T0, "member.join", "member:c@acme.com", None, state("c@acme.com", sources=["hr", "scim:acme"]))
    assert members_at(org.id, T0)[0]["sources"] == ["hr", "scim:acme"]


def test_other_targets_and_other_orgs_are_not_members(story):
    other = orgs.create("globex", "Globex")
    record(other.id, T0, "member.join", "member:eve@globex.com", None, state("eve@globex.com"))
    assert {m["email"] for m in members_at(story.id, T0 + 50 * DAY)} == {"alice@acme.com", "bob@acme.com"}


def test_after_retention_carried_states_stand_in_for_pruned_history(story):
    result = ledger.prune(story.id, T0 + 3 * DAY)
    assert result.pruned == 4 and ledger.verify(story.id).ok
    assert roles(members_at(story.id, T0 + 3 * DAY)) == {
        "alice@acme.com": ("admin", "active"),
        "bob@acme.com": ("member", "active"),
    }
    assert roles(members_at(story.id, T0 + 40 * DAY))["bob@acme.com"] == ("member", "deprovisioned")
    ledger.prune(story.id, T0 + 30 * DAY)
    assert roles(members_at(story.id, T0 + 31 * DAY)) == {
        "alice@acme.com": ("admin", "active"),
        "bob@acme.com": ("member", "suspended"),
    }


def test_a_moment_before_the_pruned_horizon_is_refused(story):
    ledger.prune(story.id, T0 + 3 * DAY)
    with pytest.raises(HistoryError, match=r"before 2026-02-04T09:00:00\.000000Z were pruned"):
        members_at(story.id, T0 + DAY)


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-03-01", False, datetime(2026, 3, 1)),
        ("2026-03-01", True, datetime(2026, 3, 2)),
        ("2026-03-01T10:15:00", False, datetime(2026, 3, 1, 10, 15)),
        ("2026-03-01T10:15:00Z", True, datetime(2026, 3, 1, 10, 15)),
        ("2026-03-01T10:15:00+02:00", False, datetime(2026, 3, 1, 8, 15)),
        ("2026-03-01 10:15:00.5-05:00", False, datetime(2026, 3, 1, 15, 15, 0, 500000)),
    ],
)
def test_moments_are_iso_8601_in_utc(text, end_of_day, expected):
    assert parse_moment(text, "--at", end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "01/03/2026", ""])
def test_an_unreadable_moment_names_the_flag_and_an_example(text):
    with pytest.raises(HistoryError, match=r"^--at: .* is not an ISO 8601 date or time; use e\.g\. 2026-11-25"):
        parse_moment(text, "--at")


def test_members_at_is_one_query_not_a_scan(story, monkeypatch):
    statements = []
    database = LedgerEntry._meta.database
    original = database.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(database.obj, "execute_sql", counting)
    history.members_at(story.id, T0 + 10 * DAY)
    member_queries = [s for s in statements if "GROUP BY" in s.upper()]
    assert len(member_queries) == 1 and "MAX" in member_queries[0].upper() and len(statements) <= 2


CHANGE = st.tuples(
    st.sampled_from(["alice", "bob", "carol", "dave"]),
    st.integers(0, 3 * 24 * 60),
    st.sampled_from(["member", "admin", "guest", "owner"]),
    st.sampled_from(["active", "suspended", "deprovisioned"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(CHANGE, min_size=1, max_size=25),
    ask=st.integers(0, 3 * 24 * 60),
    prune_at=st.none() | st.integers(0, 3 * 24 * 60),
)
def test_members_at_matches_replaying_the_ledger_even_after_retention(org, changes, ask, prune_at):
    LedgerEntry.delete().where(LedgerEntry.org == org.id).execute()
    timeline = sorted(changes, key=lambda c: c[1])
    current: dict[str, dict] = {}
    for name, minute, role, status in timeline:
        email = f"{name}@acme.com"
        after = state(email, role, status)
        action = "member.join" if name not in current else "member.update"
        record(org.id, T0 + timedelta(minutes=minute), action, f"member:{email}", current.get(name), after)
        current[name] = after
    moment = T0 + timedelta(minutes=ask)
    if prune_at is not None:
        ledger.prune(org.id, T0 + timedelta(minutes=prune_at), now=T0 + timedelta(days=10))
        assert ledger.verify(org.id).ok
    if prune_at is not None and ask < prune_at and ledger.checkpoints(org.id):
        with pytest.raises(HistoryError):
            members_at(org.id, moment)
        return
    expected: dict[str, dict] = {}
    for name, minute, role, status in timeline:
        if minute <= ask:
            expected[name] = (role, status)
    assert roles(members_at(org.id, moment)) == {f"{n}@acme.com": v for n, v in expected.items()}
