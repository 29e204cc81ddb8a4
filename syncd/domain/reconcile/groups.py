"""Flattening nested directory groups: a person in group B, nested in A, is in A too.

Directories allow cycles (AD permits A ∋ B ∋ A; SCIM Groups may list each other), so the walk keeps a visited set
and reports each cycle once instead of recursing forever.
"""

from __future__ import annotations

from collections.abc import Iterable

from syncd.domain.reconcile.model import ObservedGroup

GroupId = tuple[str, str]
"""(source name, group key): group keys are unique only within their source."""


def ancestors(groups: Iterable[ObservedGroup]) -> tuple[dict[GroupId, tuple[GroupId, ...]], list[str]]:
    """Map every group to itself followed by every group it is nested in, directly or not; and name the cycles.

    The walk is breadth first from each group up its parents, so the nearest enclosing groups come first (their
    names make the clearest reasons). Cost is the size of each closure; directories have shallow nesting.
    """
    by_id: dict[GroupId, ObservedGroup] = {}
    parents: dict[GroupId, list[GroupId]] = {}
    for group in groups:
        gid = (group.source, group.key)
        by_id[gid] = group
        for child in group.member_groups:
            parents.setdefault((group.source, child), []).append(gid)
    closure: dict[GroupId, tuple[GroupId, ...]] = {}
    cycles: list[str] = []
    seen_cycles: set[frozenset[GroupId]] = set()
    for gid in by_id:
        order = [gid]
        visited = {gid}
        cyclic = False
        index = 0
        while index < len(order):
            for parent in sorted(parents.get(order[index], ())):
                if parent == gid:
                    cyclic = True
                if parent not in visited and parent in by_id:
                    visited.add(parent)
                    order.append(parent)
            index += 1
        closure[gid] = tuple(order)
        if cyclic:
            members = frozenset(g for g in order if gid in _reach(g, parents, by_id))
            if members not in seen_cycles:
                seen_cycles.add(members)
                names = ", ".join(sorted(f"'{by_id[g].display_name}'" for g in members))
                cycles.append(f"source {gid[0]}: groups {names} contain each other; treated as one group")
    return closure, cycles


def _reach(start: GroupId, parents: dict[GroupId, list[GroupId]], by_id: dict[GroupId, ObservedGroup]) -> set[GroupId]:
    seen = {start}
    stack = [start]
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in seen and parent in by_id:
                seen.add(parent)
                stack.append(parent)
    return seen
