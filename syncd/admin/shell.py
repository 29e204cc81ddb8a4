"""The imperative shell's start: load the config, open and migrate the store, declare configured orgs and sources.

Only the shell (CLI, ``serve``, scheduler jobs) wires the parts together (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import peewee

from syncd import config as config_module
from syncd.config import Config
from syncd.store import open_database, upgrade
from syncd.store.db import UNREACHABLE, unavailable
from syncd.store.models import Organization, Source
from syncd.store.tx import write_transaction
from syncd.sync import orgs


@dataclass
class Runtime:
    """What a command runs against: the validated config and the open, current database."""

    config: Config
    db: peewee.Database
    declared: list[str] = field(default_factory=list)
    """What loading the config changed in the store (orgs created or updated, each ledgered), for the CLI to say."""


def start(config_path: str | None = None, config: Config | None = None) -> Runtime:
    """Load the config (unless given), open the database, apply migrations, declare orgs and sources.

    A database that cannot be opened or reached is one :class:`StoreUnavailable` naming it without its password.
    """
    cfg = config or config_module.load(config_path)
    try:
        db = open_database(cfg.database.url)
        upgrade()
        declared = declare_and_describe(cfg)
    except UNREACHABLE as error:
        raise unavailable(error, cfg.database.url) from None
    return Runtime(config=cfg, db=db, declared=declared)


def declare_and_describe(cfg: Config) -> list[str]:
    """:func:`declare`, returning one line per org the config created or changed.

    Every command that loads the config declares it, so the user is told once, by the command that recorded the
    change in the ledger, rather than finding ``org.update`` entries there later.
    """
    existing = {org.slug: orgs.org_state(org) for org in Organization.select()}
    declare(cfg)
    said = []
    for settings in cfg.orgs:
        before, after = existing.get(settings.slug), orgs.org_state(orgs.get(settings.slug))
        if before is None:
            said.append(f"org {settings.slug} created from the config (ledgered as org.create)")
        elif after != before:
            keys = ", ".join(_changed_keys(before, after))
            said.append(f"org {settings.slug} updated from the config: {keys} (ledgered as org.update)")
    return said


def _changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Dotted names of what differs (``policy.guard_max_count``), so the note says what the edit did."""
    keys = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += [f"{key}.{inner}" for inner in _changed_keys(old, new)]
        elif old != new:
            keys.append(key)
    return keys


def check_declarable(cfg: Config) -> None:
    """Refuse a config the store cannot take as it is, before anything is written: a source naming an org that is
    neither declared nor created, or an existing source moved to another org (its staged view, cursor and members
    belong to the first one)."""
    declared = {org.slug for org in cfg.orgs}
    existing = {slug: org_id for slug, org_id in Organization.select(Organization.slug, Organization.id).tuples()}
    for source in cfg.sources:
        if source.org not in declared and source.org not in existing:
            raise config_module.ConfigError(
                f"sources: source {source.name!r} names org {source.org!r}, which is neither declared in [[orgs]] "
                f"nor created; add it to the config or run 'syncd orgs create {source.org} --name ...'"
            )
        row = Source.get_or_none(Source.name == source.name)
        if row is not None and row.org_id != existing.get(source.org):
            raise config_module.ConfigError(
                f"sources: source {source.name!r} belonged to another org; give the moved source a new name"
            )


def declare(cfg: Config) -> None:
    """Make the store agree with the config's orgs and sources (created or updated; nothing deleted).

    All or nothing: the whole config is checked first (:func:`check_declarable`), then declared in one write
    transaction, so a config refused half-way (a ``SIGHUP`` reload, a command's start) leaves no ``org.update`` or
    ``org.create`` behind and the planner never sees a policy the running config does not have.
    """
    check_declarable(cfg)
    with write_transaction():
        for org_settings in cfg.orgs:
            orgs.declare(org_settings)
        for source in cfg.sources:
            org = Organization.get(Organization.slug == source.org)
            row = Source.get_or_none(Source.name == source.name)
            if row is None:
                Source.create(org=org, name=source.name, kind=source.kind, precedence=source.precedence)
            elif (row.org_id, row.kind, row.precedence) != (org.id, source.kind, source.precedence):
                if row.org_id != org.id:
                    raise config_module.ConfigError(
                        f"sources: source {source.name!r} belonged to another org; give the moved source a new name"
                    )
                row.kind, row.precedence = source.kind, source.precedence
                row.save()
