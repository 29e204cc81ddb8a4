"""Mapping rules (config ``[[orgs.rules]]``): which directory groups and attributes grant which role and team.

A rule's condition is one of: ``group`` (display name, case-insensitive), ``group_glob`` (shell pattern on the name,
case-insensitive), ``group_id`` (the group's external id or its source key), ``attribute`` (every named attribute
equals the value, or one of the values given as a list; case-insensitive). ``source`` limits a rule to one source.
Rules are numbered from 1 in config order; reasons name the rule so an admin can find it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from syncd.domain.reconcile.groups import GroupId, ancestors
from syncd.domain.reconcile.model import ObservedGroup, ObservedIdentity


class RuleLike(Protocol):
    """The fields of :class:`syncd.config.Rule` the planner reads (kept structural: the planner imports no I/O)."""

    group: str | None
    group_glob: str | None
    group_id: str | None
    attribute: Mapping[str, Any]
    source: str | None
    role: str | None
    team: str | None
    team_role: str
    parent: str | None


@dataclass(frozen=True, slots=True)
class Grant:
    """One rule that applies to one identity, and why (``group 'IT Admins', rule 3``)."""

    rule: int
    reason: str
    role: str | None
    team: str | None
    team_name: str | None
    team_role: str
    parent: str | None


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def team_slug(name: str) -> str:
    """``"Platform Engineering"`` → ``platform-engineering``: the team's stable identifier."""
    return _NOT_SLUG.sub("-", name.strip().lower()).strip("-") or "team"


class RuleBook:
    """The rules, pre-matched against every group once, so each identity costs a few set look-ups."""

    def __init__(self, rules: Sequence[RuleLike], groups: Iterable[ObservedGroup]) -> None:
        self.rules = list(rules)
        group_list = list(groups)
        closure, self.cycles = ancestors(group_list)
        by_id = {(g.source, g.key): g for g in group_list}
        matched: dict[GroupId, list[int]] = {}
        for number, rule in enumerate(self.rules, start=1):
            if rule.attribute:
                continue
            for gid, group in by_id.items():
                if _group_matches(rule, group):
                    matched.setdefault(gid, []).append(number)
        self._attribute_rules = [(n, r) for n, r in enumerate(self.rules, start=1) if r.attribute]
        self._by_group: dict[GroupId, tuple[Grant, ...]] = {}
        for gid, chain in closure.items():
            grants: dict[int, Grant] = {}
            for enclosing in chain:
                for number in matched.get(enclosing, ()):
                    if number in grants:
                        continue
                    name = by_id[enclosing].display_name
                    via = "" if enclosing == gid else f" via '{by_id[gid].display_name}'"
                    grants[number] = self._grant(number, f"group '{name}'{via}, rule {number}")
            if grants:
                self._by_group[gid] = tuple(grants[n] for n in sorted(grants))

    def _grant(self, number: int, reason: str) -> Grant:
        rule = self.rules[number - 1]
        return Grant(
            rule=number,
            reason=reason,
            role=rule.role,
            team=team_slug(rule.team) if rule.team else None,
            team_name=rule.team,
            team_role=rule.team_role,
            parent=team_slug(rule.parent) if rule.parent else None,
        )

    def grants(self, identity: ObservedIdentity) -> list[Grant]:
        """Every rule that applies to this identity, through its (flattened) groups or its attributes."""
        found: list[Grant] = []
        for key in identity.groups:
            found.extend(self._by_group.get((identity.source, key), ()))
        for number, rule in self._attribute_rules:
            if rule.source is not None and rule.source != identity.source:
                continue
            if all(_attribute_matches(identity, name, wanted) for name, wanted in rule.attribute.items()):
                shown = ", ".join(f"{name}={wanted!r}" for name, wanted in rule.attribute.items())
                found.append(self._grant(number, f"attribute {shown}, rule {number}"))
        return found


def _group_matches(rule: RuleLike, group: ObservedGroup) -> bool:
    if rule.source is not None and rule.source != group.source:
        return False
    if rule.group is not None:
        return group.display_name.casefold() == rule.group.casefold()
    if rule.group_glob is not None:
        return fnmatch.fnmatchcase(group.display_name.casefold(), rule.group_glob.casefold())
    if rule.group_id is not None:
        return rule.group_id in (group.external_id, group.key)
    return False


def _attribute_matches(identity: ObservedIdentity, name: str, wanted: Any) -> bool:
    value = identity.attributes.get(name)
    if value is None:
        value = {"email": identity.email, "user_name": identity.user_name, "userName": identity.user_name}.get(name)
    if value is None:
        return False
    options = wanted if isinstance(wanted, list | tuple) else [wanted]
    have = str(value).casefold()
    return any(str(option).casefold() == have for option in options)
