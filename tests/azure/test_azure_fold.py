"""Folding delta pages into records: for any page split, duplicate or replay, the result is the net change."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connectors.azure.records import GroupFold, UserFold, delta, snapshot

MEMBERS = st.sampled_from([f"m{i}" for i in range(8)])
EVENTS = st.lists(st.tuples(MEMBERS, st.booleans()), max_size=40)


def _pages(group: str, events: list[tuple[str, bool]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    """The group repeated on every page, its members@delta split at ``cuts`` (as Graph splits large groups)."""
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    pages = []
    for start, end in itertools.pairwise(bounds):
        entries = [
            {"@odata.type": "#microsoft.graph.user", "id": m} | ({} if added else {"@removed": {"reason": "deleted"}})
            for m, added in events[start:end]
        ]
        pages.append([{"id": group, "displayName": "G", "members@delta": entries}])
    return pages or [[{"id": group, "displayName": "G"}]]


def _net(events: list[tuple[str, bool]]) -> tuple[set[str], set[str]]:
    last = dict(events)
    return {m for m, added in last.items() if added}, {m for m, added in last.items() if not added}


@given(EVENTS, st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_split_members_fold_to_the_last_word_on_each_member(events: list[tuple[str, bool]], cuts: list[int]) -> None:
    fold = GroupFold()
    for page in _pages("g", events, cuts):
        fold.add(page)

    added, removed = _net(events)
    result = delta(UserFold(), fold, "cursor")
    assert result.members_added.get("g", set()) == added
    assert result.members_removed.get("g", set()) == removed
    assert snapshot(UserFold(), fold, "cursor").groups[0].member_keys == frozenset(added)


@given(EVENTS, st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_a_replayed_round_folds_to_the_same_result(events: list[tuple[str, bool]], cuts: list[int]) -> None:
    once, twice = GroupFold(), GroupFold()
    pages = _pages("g", events, cuts)
    for page in pages:
        once.add(page)
    for page in pages + pages:
        twice.add(page)

    assert delta(UserFold(), once, "c") == delta(UserFold(), twice, "c")


@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(["upsert", "changed", "deleted"]))))
def test_users_fold_to_their_last_appearance(events: list[tuple[str, str]]) -> None:
    fold = UserFold()
    for key, what in events:
        fold.add(
            [
                {"id": key, "userPrincipalName": f"{key}@x"}
                if what == "upsert"
                else {"id": key, "@removed": {"reason": what}}
            ]
        )

    last = dict(events)
    result = delta(fold, None, "c")
    assert {u.key for u in result.users} == {k for k, w in last.items() if w == "upsert"}
    assert set(result.removed_user_keys) == {k for k, w in last.items() if w != "upsert"}
