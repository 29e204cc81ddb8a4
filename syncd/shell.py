"""The imperative shell's start: load the config, open and migrate the store, declare configured orgs and sources.

Only the shell (CLI, ``serve``, scheduler jobs) wires the parts together (DESIGN.md, "Which part may import which").
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from syncd import config as config_module
from syncd import orgs, pipeline
from syncd.config import Config
from syncd.store import open_database, upgrade
from syncd.store.models import Organization, Source
from syncd.store.tx import write_transaction


@dataclass
class Runtime:
    """What a command runs against: the validated config and the open, current database."""

    config: Config
    db: peewee.Database


def start(config_path: str | None = None, config: Config | None = None) -> Runtime:
    """Load the config (unless given), open the database, apply migrations, declare orgs and sources."""
    cfg = config or config_module.load(config_path)
    db = open_database(cfg.database.url)
    upgrade()
    declare(cfg)
    pipeline.use_config(cfg)
    return Runtime(config=cfg, db=db)


def declare(cfg: Config) -> None:
    """Make the store agree with the config's orgs and sources (created or updated; nothing deleted)."""
    for org_settings in cfg.orgs:
        orgs.declare(org_settings)
    for source in cfg.sources:
        org = Organization.get_or_none(Organization.slug == source.org)
        if org is None:
            raise config_module.ConfigError(
                f"sources: source {source.name!r} names org {source.org!r}, which is neither declared in [[orgs]] "
                f"nor created; add it to the config or run 'syncd orgs create {source.org} --name ...'"
            )
        with write_transaction():
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
