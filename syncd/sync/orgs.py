"""Organizations: created by ``syncd orgs create`` or declared in the config; each gets its SCIM source."""

from __future__ import annotations

import dataclasses
import functools
import json

from peewee import fn

from syncd.clock import utcnow
from syncd.config import ConfigError, OrgSettings, Policy, check_domain, is_slug
from syncd.store.models import Member, Organization, Source
from syncd.store.tx import write_transaction
from syncd.sync import ledger


class OrgError(Exception):
    """An org operation was refused; the message says why and what to do."""


def scim_source_name(slug: str) -> str:
    """The name of an org's SCIM source: what its IdP pushes is this source's view (docs/architecture.md, "The
    model")."""
    return f"scim:{slug}"


def org_state(org: Organization) -> dict[str, object]:
    return {
        "slug": org.slug,
        "name": org.name,
        "domains": json.loads(org.domains),
        "match_on": org.match_on,
        "status": org.status,
        "policy": json.loads(org.policy),
    }


def create(
    slug: str,
    name: str,
    domains: list[str] | tuple[str, ...] = (),
    actor: str = "admin:cli",
    match_on: str = "email",
    policy: Policy | None = None,
) -> Organization:
    """Create an org and its SCIM source, ledgered as the org's first entry."""
    if not is_slug(slug):
        raise OrgError(f"org slug {slug!r} is invalid; use lowercase letters, digits and dashes (e.g. acme-corp)")
    for domain in domains:
        try:
            check_domain(domain, "--domain")
        except ConfigError as error:
            raise OrgError(str(error)) from None
    now = utcnow()
    with write_transaction():
        if Organization.select().where(Organization.slug == slug).exists():
            raise OrgError(f"org {slug!r} already exists; choose another slug or see 'syncd orgs list'")
        org = Organization.create(
            slug=slug,
            name=name,
            domains=json.dumps(sorted({d.lower() for d in domains})),
            match_on=match_on,
            policy=json.dumps(dataclasses.asdict(policy or Policy()), sort_keys=True),
            created_at=now,
        )
        Source.create(org=org, name=scim_source_name(slug), kind="scim", precedence=0)
        ledger.append(
            org.id, actor=actor, action="org.create", target=f"org:{slug}", after=org_state(org), reason="created"
        )
    return org


def declare(settings: OrgSettings) -> Organization:
    """Create or update an org declared in the config; a change is ledgered, no change writes nothing."""
    org = Organization.get_or_none(Organization.slug == settings.slug)
    if org is None:
        return create(
            settings.slug,
            settings.name or settings.slug,
            settings.domains,
            actor="system:config",
            match_on=settings.match_on,
            policy=settings.policy,
        )
    before = org_state(org)
    with write_transaction():
        org.name = settings.name or settings.slug
        org.domains = json.dumps(sorted(settings.domains))
        org.match_on = settings.match_on
        org.policy = json.dumps(dataclasses.asdict(settings.policy), sort_keys=True)
        after = org_state(org)
        if after != before:
            org.save()
            ledger.append(
                org.id,
                actor="system:config",
                action="org.update",
                target=f"org:{org.slug}",
                before=before,
                after=after,
                reason="config changed",
            )
    return org


def listing() -> list[dict[str, object]]:
    """Every org by slug with its count of active members, as ``syncd orgs list --format json`` prints it (one
    grouped count, not a query per org)."""
    active = dict(
        Member.select(Member.org, fn.COUNT(Member.id)).where(Member.status == "active").group_by(Member.org).tuples()
    )
    return [
        {
            "slug": org.slug,
            "name": org.name,
            "domains": json.loads(org.domains),
            "status": org.status,
            "active_members": active.get(org.id, 0),
        }
        for org in Organization.select().order_by(Organization.slug)
    ]


def get(slug: str) -> Organization:
    org = Organization.get_or_none(Organization.slug == slug)
    if org is None:
        raise OrgError(
            f"no org {slug!r}; see 'syncd orgs list' or create it with 'syncd orgs create {slug} --name ...'"
        )
    return org


def policy_of(org: Organization) -> Policy:
    return _policy(org.policy)


@functools.lru_cache(maxsize=256)
def _policy(text: str) -> Policy:
    """The policy a stored text holds (a frozen value: every SCIM write reads its org's twice)."""
    return Policy(**json.loads(text))
