"""Gathering the planner's inputs from the store: the shell side of the functional core (docs/architecture.md).

Two scopes: the whole org (source runs, ``syncd plan --org``), read as tuples in a few set-based queries, and a
handful of members by match key (SCIM writes), read through the indexes on match key, group and member key so
that its cost does not grow with the org. The narrow reads run on every SCIM write, so their statements are composed
once (``syncd.store.sql``): peewee composing them cost more than SQLite answering them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from connectors.interface import DESCRIPTIVE_FIELDS
from syncd.domain.reconcile import (
    Current,
    CurrentMember,
    MemberState,
    Observed,
    ObservedGroup,
    ObservedIdentity,
    PlanPolicy,
    RuleLike,
)
from syncd.store import sql
from syncd.store.models import DirectoryGroup, GroupMember, Identity, Member, Organization, Source, Team, TeamMember
from syncd.store.sql import batches, raw_rows
from syncd.sync.orgs import policy_of

ATTRIBUTE_COLUMNS = DESCRIPTIVE_FIELDS

PLANNED_COLUMNS = ("match_key", "user_name", "email", "display_name", "active", "manager_key")
"""The identity columns the planner reads of every identity, besides its memberships (``manager_key`` for its
manager's email); attribute rules also read :data:`ATTRIBUTE_COLUMNS` and the ``resource`` (:func:`planned_columns`)."""

SHARED_ATTRIBUTES = frozenset({"department", "title"})
"""Attributes many people have the same value of: read into one string object per value."""

SHARED_GROUP_SETS = 65_536
"""At most this many distinct group sets are shared between identities (a few megabytes of index)."""

_NO_GROUPS: frozenset[str] = frozenset()
_NO_ATTRIBUTES: dict[str, Any] = {}
"""Shared by every identity without groups or attributes (the planner only reads them)."""


@dataclass(slots=True)
class MemberRow:
    """What apply needs of a stored member besides its ledger state: its row id and lifecycle timestamps."""

    id: int
    suspended_at: datetime | None
    deprovisioned_at: datetime | None
    transfer_to: str | None


@dataclass
class Inputs:
    """Everything the planner reads, plus the row ids apply writes to and the org-wide active count the guard uses
    (counted for whole-org plans only)."""

    observed: Observed
    overrides: dict[str, str]
    current: Current
    policy: PlanPolicy
    members: dict[str, MemberRow]
    teams: dict[str, int]
    active: int

    def release_planned(self) -> None:
        """Drop what only planning and the guard read (observed identities, current members, overrides), keeping
        what apply writes to: once a whole-org plan is judged, its inputs are most of the run's memory."""
        self.observed = Observed((), (), self.observed.precedence)
        self.current = Current({}, self.current.teams, self.current.active_owners)
        self.overrides = {}


def plan_policy(org: Organization) -> PlanPolicy:
    policy = policy_of(org)
    return PlanPolicy(
        org=org.slug,
        domains=tuple(json.loads(org.domains)),
        grace_days=policy.grace_days,
        default_role=policy.default_role,
        transfer_to=policy.transfer_to,
    )


def reads_attributes(rules: Sequence[RuleLike]) -> bool:
    """Whether these rules match on identity attributes (then every descriptive field is read)."""
    return any(getattr(rule, "attribute", None) for rule in rules)


def planned_columns(rules: Sequence[RuleLike]) -> frozenset[str]:
    """The identity columns whose values a plan under these rules depends on: a write that changes none of them
    (nor a membership) cannot change any member's plan."""
    if reads_attributes(rules):
        return frozenset((*PLANNED_COLUMNS, *ATTRIBUTE_COLUMNS, "resource"))
    return frozenset(PLANNED_COLUMNS)


def gather(
    org: Organization,
    rules: Sequence[RuleLike],
    match_keys: Iterable[str] | None = None,
    count_active: bool | None = None,
) -> Inputs:
    """Read the org's observed and current state (all of it, or the members with these match keys); count the
    org's active members for the guard when ``count_active`` (default: for whole-org reads)."""
    if count_active is None:
        count_active = match_keys is None
    keys = None if match_keys is None else sorted(set(match_keys))
    sources = {source_id: (name, precedence) for source_id, name, precedence in _sources(org.id)}
    want_attributes = reads_attributes(rules)
    identity_rows = _identity_rows(org, keys, want_attributes)
    direct = _direct_groups(org, keys, identity_rows)
    groups = _groups(org, None if keys is None else {g for s in direct.values() for g in s})
    group_key = {gid: key for gid, (_, key, _, _, _) in groups.items()}
    identities = _identities(identity_rows, direct, sources, group_key)
    del direct
    observed = Observed(tuple(identities), _observed_groups(groups, sources), {name: p for name, p in sources.values()})
    members, rows = _members(org, keys)
    teams = {slug: (team_id, parent) for team_id, slug, parent in _teams(org)}
    slug_of = {team_id: slug for slug, (team_id, _) in teams.items()}
    # A few members: the org-wide owner count matters only when one of them is an active owner (last-owner rule).
    needs_owners = keys is None or any(m.state.role == "owner" and m.state.status == "active" for m in members.values())
    current = Current(
        members,
        {slug: slug_of.get(parent) if parent else None for slug, (_, parent) in teams.items()},
        _count(org, owners=True) if needs_owners else 0,
    )
    overrides = {key: m.state.role for key, m in members.items() if m.state.pinned}
    return Inputs(
        observed=observed,
        overrides=overrides,
        current=current,
        policy=plan_policy(org),
        members=rows,
        teams={slug: team_id for slug, (team_id, _) in teams.items()},
        active=_count(org, owners=False) if count_active else 0,
    )


def _identities(
    identity_rows: list[tuple[Any, ...]],
    direct: dict[tuple[int, str], list[int]],
    sources: dict[int, tuple[str, int]],
    group_key: dict[int, str],
) -> list[ObservedIdentity]:
    """The observed identities of these rows, each with the keys of the groups it is directly in; the rows are
    consumed (each dropped once its identity is built, so that a whole-org read does not hold both at once)."""
    managers = _manager_emails(identity_rows)
    identities = []
    # People in the same groups share one frozenset of them (whole departments are): up to a bound on distinct
    # sets, so that an org where every set differs does not hold a second index of them.
    group_sets: dict[frozenset[str], frozenset[str]] = {}
    identity_rows.reverse()
    while identity_rows:
        row = identity_rows.pop()
        source_id, key = row[0], row[1]
        in_groups = direct.pop((source_id, key), ())
        member_of = frozenset(group_key[g] for g in in_groups if g in group_key) if in_groups else _NO_GROUPS
        if len(group_sets) < SHARED_GROUP_SETS:
            member_of = group_sets.setdefault(member_of, member_of)
        else:
            member_of = group_sets.get(member_of, member_of)
        identities.append(
            ObservedIdentity(
                source=sources[source_id][0],
                key=key,
                match_key=row[2],
                user_name=row[3],
                email=row[4],
                display_name=row[5],
                active=bool(row[6]),
                attributes=row[8],
                groups=member_of,
                manager=managers.get((source_id, row[7])) if row[7] else None,
            )
        )
    return identities


def _observed_groups(
    groups: dict[int, tuple[int, str, str, str | None, set[str]]], sources: dict[int, tuple[str, int]]
) -> tuple[ObservedGroup, ...]:
    return tuple(
        ObservedGroup(
            source=sources[source_id][0],
            key=key,
            display_name=name,
            external_id=external_id,
            member_groups=frozenset(children),
        )
        for source_id, key, name, external_id, children in groups.values()
    )


@dataclass
class OrgView:
    """What a whole-org plan made in member chunks reads once (docs/architecture.md, "Memory of a whole-org
    plan"): every match key in plan order (by key, the active owners last, as the planner plans them), the sources,
    every group, the policy, the teams (slug → parent slug) and the org-wide counts the planner and guard use."""

    keys: list[str]
    sources: dict[int, tuple[str, int]]
    group_key: dict[int, str]
    groups: tuple[ObservedGroup, ...]
    precedence: dict[str, int]
    policy: PlanPolicy
    teams: dict[str, str | None]
    active_owners: int
    active: int
    want_attributes: bool


def org_view(org: Organization, rules: Sequence[RuleLike]) -> OrgView:
    """Read what :func:`gather_chunk` and the planner need once per whole-org plan."""
    sources = {source_id: (name, precedence) for source_id, name, precedence in _sources(org.id)}
    groups = _groups(org, None)
    found: set[str] = {key for (key,) in raw_rows(_match_keys(Identity, org))}
    found.update(key for (key,) in raw_rows(_match_keys(Member, org)))
    keys = sorted(found)
    del found
    owners = set(active_owners(org))
    if owners:
        keys = [key for key in keys if key not in owners] + [key for key in keys if key in owners]
    return OrgView(
        keys=keys,
        sources=sources,
        group_key={gid: key for gid, (_, key, _, _, _) in groups.items()},
        groups=_observed_groups(groups, sources),
        precedence={name: p for name, p in sources.values()},
        policy=plan_policy(org),
        teams=team_parents(org),
        active_owners=_count(org, owners=True),
        active=_count(org, owners=False),
        want_attributes=reads_attributes(rules),
    )


def _match_keys(model: type[Identity] | type[Member], org: Organization) -> peewee.Select:
    return model.select(model.match_key).where((model.org == org.id) & model.match_key.is_null(False))


def gather_chunk(org: Organization, view: OrgView, keys: Sequence[str]) -> Inputs:
    """The planner's inputs for the members with these keys, one chunk of a whole-org plan: their identities and
    current state, read through the indexes as a narrow :func:`gather` reads them; groups, sources and policy
    come from ``view``, the team ids from the store (a batch before may have created teams)."""
    identity_rows = _identity_rows(org, sorted(keys), view.want_attributes)
    direct = _direct_groups(org, keys, identity_rows)
    identities = _identities(identity_rows, direct, view.sources, view.group_key)
    members, rows = _members(org, sorted(keys))
    return Inputs(
        observed=Observed(tuple(identities), (), view.precedence),
        overrides={key: m.state.role for key, m in members.items() if m.state.pinned},
        current=Current(members, view.teams, view.active_owners),
        policy=view.policy,
        members=rows,
        teams={slug: team_id for team_id, slug, _ in _teams(org)},
        active=view.active,
    )


def group_keys(org: Organization) -> dict[int, str]:
    """The org's group ids → group keys, as stored now."""
    query = DirectoryGroup.select(DirectoryGroup.id, DirectoryGroup.key).where(DirectoryGroup.org == org.id)
    return dict(query.tuples())


def team_parents(org: Organization) -> dict[str, str | None]:
    """The org's teams now: slug → the parent team's slug (None at the top)."""
    teams = _teams(org)
    slug_of = {team_id: slug for team_id, slug, _ in teams}
    return {slug: slug_of.get(parent) if parent else None for _, slug, parent in teams}


def _identity_rows(org: Organization, keys: list[str] | None, want_attributes: bool) -> list[tuple[Any, ...]]:
    columns = [Identity.source, Identity.key, *(getattr(Identity, name) for name in PLANNED_COLUMNS)]
    extra = [getattr(Identity, name) for name in ATTRIBUTE_COLUMNS] + [Identity.resource] if want_attributes else []

    # Narrow reads build their query only when its text is not cached yet (``syncd.store.sql``). They name no
    # ``IS NOT NULL`` (``IN`` never matches NULL): beside ``IN`` it makes SQLite read the (org, match_key) index as
    # the range ``match_key > ?``, every identity of the org for each chunk, instead of one lookup per key.
    def base() -> peewee.Select:
        return Identity.select(*columns, *extra)

    if keys is None:
        found: Iterable[tuple[Any, ...]] = raw_rows(
            base().where((Identity.org == org.id) & Identity.match_key.is_null(False))
        )
    else:
        statement = "identities+attributes" if want_attributes else "identities"
        found = [
            row
            for chunk in batches(keys)
            for row in sql.rows(
                statement,
                lambda chunk=chunk: base().where((Identity.org == org.id) & Identity.match_key.in_(chunk)),
                [org.id, *chunk],
            )
        ]
    rows = []
    # One string object per repeated value: the driver returns a new one per cell, and a whole-org read of a
    # million people repeats user names that equal emails, employee numbers that equal keys, departments and titles.
    shared: dict[str, str] = {}
    share = shared.setdefault
    for row in found:
        attributes: dict[str, Any] = {}
        if want_attributes:
            resource = row[-1]
            if resource and resource != "{}":
                loaded = json.loads(resource)
                if isinstance(loaded, dict):
                    attributes.update(loaded)
            for name, value in zip(ATTRIBUTE_COLUMNS, row[8:-1], strict=True):
                if value is None:
                    continue
                if name in SHARED_ATTRIBUTES:
                    value = share(value, value)
                elif value == row[1]:
                    value = row[1]
                attributes[name] = value
        source_id, key, match_key, user_name, email = row[:5]
        if email is not None and user_name == email:
            user_name = email
        if match_key == email:
            match_key = email
        elif match_key == user_name:
            match_key = user_name
        rows.append((source_id, key, match_key, user_name, email, *row[5:8], attributes or _NO_ATTRIBUTES))
    return rows


def _manager_emails(identity_rows: list[tuple[Any, ...]]) -> dict[tuple[int, str], str | None]:
    """(source id, manager key) → the email of that manager's identity in the same source (a Graph ``manager``, an
    LDAP ``manager`` DN, an Okta ``managerId`` or a SCIM enterprise ``manager.value`` names a record of its own
    source). Identities already read answer first; the others are read by the (source, key) index."""
    wanted = {(row[0], row[7]) for row in identity_rows if row[7]}
    if not wanted:
        return {}
    known = {(row[0], row[1]): row[4] for row in identity_rows}
    found = {pair: known[pair] for pair in wanted if pair in known}
    missing: dict[int, list[str]] = {}
    for source_id, key in sorted(wanted - found.keys()):
        missing.setdefault(source_id, []).append(key)
    for source_id, keys in missing.items():
        for chunk in batches(keys):
            for key, email in sql.rows(
                "manager emails",
                lambda source_id=source_id, chunk=chunk: Identity.select(Identity.key, Identity.email).where(
                    (Identity.source == source_id) & Identity.key.in_(chunk)
                ),
                [source_id, *chunk],
            ):
                found[(source_id, key)] = email
    return found


def _direct_groups(
    org: Organization, keys: list[str] | None, identity_rows: list[tuple[Any, ...]]
) -> dict[tuple[int, str], list[int]]:
    """(source id, identity key) → ids of the groups the identity is directly in (a list: a third of a set's size,
    and the caller makes the set)."""
    direct: dict[tuple[int, str], list[int]] = {}

    # The narrow lookups name only (source, member_key), so that SQLite picks that index over the org's.
    def base() -> peewee.Select:
        return GroupMember.select(GroupMember.source, GroupMember.member_key, GroupMember.group).where(
            GroupMember.member_kind == "User"
        )

    if keys is None:
        found: Iterable[tuple[Any, ...]] = raw_rows(base().where(GroupMember.org == org.id))
    else:
        by_source: dict[int, list[str]] = {}
        for row in identity_rows:
            by_source.setdefault(row[0], []).append(row[1])
        found = [
            row
            for source_id, identity_keys in by_source.items()
            for chunk in batches(identity_keys)
            for row in sql.rows(
                "direct groups",
                lambda source_id=source_id, chunk=chunk: base().where(
                    (GroupMember.source == source_id) & GroupMember.member_key.in_(chunk)
                ),
                ["User", source_id, *chunk],
            )
        ]
    for source_id, member_key, group_id in found:
        direct.setdefault((source_id, member_key), []).append(group_id)
    return direct


def _groups(org: Organization, start: set[int] | None) -> dict[int, tuple[int, str, str, str | None, set[str]]]:
    """Group id → (source id, key, name, external id, keys of nested child groups): all of the org's groups, or
    the ones in ``start`` and every group enclosing them."""
    columns = (
        DirectoryGroup.id,
        DirectoryGroup.source,
        DirectoryGroup.key,
        DirectoryGroup.display_name,
        DirectoryGroup.external_id,
    )
    found: dict[int, tuple[int, str, str, str | None, set[str]]] = {}

    def nested() -> peewee.Select:
        return GroupMember.select(GroupMember.group, GroupMember.source, GroupMember.member_key).where(
            GroupMember.member_kind == "Group"
        )

    if start is None:
        for gid, source_id, key, name, external_id in (
            DirectoryGroup.select(*columns).where(DirectoryGroup.org == org.id).tuples()
        ):
            found[gid] = (source_id, key, name, external_id, set())
        for parent, _, child in raw_rows(nested().where(GroupMember.org == org.id)):
            if parent in found:
                found[parent][4].add(child)
        return found
    frontier = set(start)
    edges: list[tuple[int, str]] = []
    while frontier:
        loaded = []
        for chunk in batches(sorted(frontier)):
            for gid, source_id, key, name, external_id in sql.rows(
                "groups by id",
                lambda chunk=chunk: DirectoryGroup.select(*columns).where(DirectoryGroup.id.in_(chunk)),
                chunk,
            ):
                found[gid] = (source_id, key, name, external_id, set())
                loaded.append((source_id, key))
        by_source: dict[int, list[str]] = {}
        for source_id, key in loaded:
            by_source.setdefault(source_id, []).append(key)
        parents: set[int] = set()
        for source_id, child_keys in by_source.items():
            for chunk in batches(child_keys):
                for parent, _, child in sql.rows(
                    "enclosing groups",
                    lambda source_id=source_id, chunk=chunk: nested().where(
                        (GroupMember.source == source_id) & GroupMember.member_key.in_(chunk)
                    ),
                    ["Group", source_id, *chunk],
                ):
                    edges.append((parent, child))
                    parents.add(parent)
        frontier = parents - set(found)
    for parent, child in edges:
        if parent in found:
            found[parent][4].add(child)
    return found


def _members(org: Organization, keys: list[str] | None) -> tuple[dict[str, CurrentMember], dict[str, MemberRow]]:
    columns = (
        Member.id,
        Member.match_key,
        Member.email,
        Member.user_name,
        Member.display_name,
        Member.status,
        Member.role,
        Member.pinned,
        Member.suspended_at,
        Member.deprovisioned_at,
        Member.transfer_to,
        Member.manager,
    )

    def base() -> peewee.Select:
        return Member.select(*columns).where(Member.org == org.id)

    if keys is None:
        raw = list(raw_rows(base()))
    else:
        raw = [
            row
            for chunk in batches(keys)
            for row in sql.rows(
                "members", lambda chunk=chunk: base().where(Member.match_key.in_(chunk)), [org.id, *chunk]
            )
        ]
    as_datetime = Member.suspended_at.python_value
    teams: dict[int, list[tuple[str, str]]] = {}

    def team_query() -> peewee.Select:
        return (
            TeamMember.select(TeamMember.member, Team.slug, TeamMember.role)
            .join(Team, on=(TeamMember.team == Team.id))
            .where(TeamMember.org == org.id)
        )

    if keys is None:
        memberships: Iterable[tuple[Any, ...]] = raw_rows(team_query())
    else:
        memberships = [
            row
            for chunk in batches([r[0] for r in raw])
            for row in sql.rows(
                "team memberships",
                lambda chunk=chunk: team_query().where(TeamMember.member.in_(chunk)),
                [org.id, *chunk],
            )
        ]
    for member_id, slug, role in memberships:
        teams.setdefault(member_id, []).append((slug, role))
    members: dict[str, CurrentMember] = {}
    rows: dict[str, MemberRow] = {}
    for member_id, key, email, user_name, display_name, status, role, pinned, suspended, gone, transfer, boss in raw:
        state = MemberState(
            email, user_name, display_name, status, role, bool(pinned), tuple(sorted(teams.get(member_id, ()))), boss
        )
        suspended = as_datetime(suspended) if suspended is not None else None
        gone = as_datetime(gone) if gone is not None else None
        members[key] = CurrentMember(key, state, suspended)
        rows[key] = MemberRow(member_id, suspended, gone, transfer)
    return members, rows


def _sources(org_id: int) -> list[tuple[int, str, int]]:
    return sql.rows(
        "sources",
        lambda: Source.select(Source.id, Source.name, Source.precedence).where(Source.org == org_id),
        [org_id],
    )


def _teams(org: Organization) -> list[tuple[int, str, int | None]]:
    return sql.rows("teams", lambda: Team.select(Team.id, Team.slug, Team.parent).where(Team.org == org.id), [org.id])


def _count(org: Organization, owners: bool) -> int:
    query = Member.select(peewee.fn.COUNT(Member.id)).where((Member.org == org.id) & (Member.status == "active"))
    params: list[Any] = [org.id, "active"]
    if owners:
        query = query.where(Member.role == "owner")
        params.append("owner")
    return int(sql.rows("owner count" if owners else "active count", lambda: query, params)[0][0])


def due_for_deprovision(org: Organization, grace_days: int, now: datetime) -> list[str]:
    """Match keys of suspended members whose grace period is over (time moves them, not any read)."""
    query = Member.select(Member.match_key).where(
        (Member.org == org.id)
        & (Member.status == "suspended")
        & (Member.suspended_at <= now - timedelta(days=grace_days))
    )
    return [key for (key,) in query.tuples()]


def active_owners(org: Organization) -> list[str]:
    """Match keys of the org's active owners: always planned, so the last-owner rule sees every owner change."""
    query = Member.select(Member.match_key).where(
        (Member.org == org.id) & (Member.status == "active") & (Member.role == "owner")
    )
    return [key for (key,) in query.tuples()]


def basis(org: Organization, rules: Sequence[RuleLike]) -> str:
    """Digest of everything org-wide a plan depends on besides the members' own data: rules, policy, domains,
    match key and source precedences. When it changes, every member must be planned again."""
    sources = sorted((name, precedence) for _, name, precedence in _sources(org.id))
    text = repr(([repr(rule) for rule in rules], org.policy, org.domains, org.match_on, sources))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Unmatched:
    """An identity that joins no member: it lacks the org's ``match_on`` key (docs/architecture.md)."""

    source: str
    key: str
    user_name: str
    email: str | None
    external_id: str | None

    def note(self, match_on: str) -> str:
        shown = f"userName {self.user_name!r}" if self.user_name else f"id {self.key}"
        return (
            f"source {self.source}: identity {self.key} ({shown}) has no {match_on} to match on and joins no member; "
            f"give it one in the directory or change the org's match_on"
        )


def unmatched(org: Organization, source_id: int | None = None) -> list[Unmatched]:
    """The org's identities (of one source, or all) without a match key, by source and key."""
    query = (
        Identity.select(Source.name, Identity.key, Identity.user_name, Identity.email, Identity.external_id)
        .join(Source, on=(Identity.source == Source.id))
        .where((Identity.org == org.id) & Identity.match_key.is_null())
    )
    if source_id is not None:
        query = query.where(Identity.source == source_id)
    return [Unmatched(*row) for row in query.order_by(Source.name, Identity.key).tuples()]
