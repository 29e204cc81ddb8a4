"""The embedded demo: a SQLite store, a demo organization, an HR file source and a SCIM token, in one folder.

``syncd demo`` makes the folder on first use (reusing it after), runs the first sync so members, roles and the
ledger exist at once, and then serves SCIM on 127.0.0.1 like ``syncd serve``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from syncd.admin import tokens
from syncd.sync import orgs

DEMO_ORG = "demo"
DEMO_SOURCE = "hr"

CONFIG_TEMPLATE = """\
# The syncd demo: every key is documented in config/syncd.example.toml.
[database]
url = "sqlite:///{db}"

[server]
listen = "{listen}"

[[orgs]]
slug = "{org}"
name = "Demo Corp"
domains = ["demo.example"]
match_on = "email"
[orgs.policy]
grace_days = 30
guard_max_percent = 25
guard_max_count = 5

[[orgs.rules]]
group = "Owners"
role = "owner"
[[orgs.rules]]
group = "IT Admins"
role = "admin"
[[orgs.rules]]
group = "Engineering"
team = "engineering"
[[orgs.rules]]
group = "Platform"
team = "platform"
parent = "engineering"
[[orgs.rules]]
group = "Leadership"
team = "leadership"
team_role = "maintainer"

[[sources]]
name = "{source}"
org = "{org}"
kind = "file"
# Once a day, so that an edit to people.csv waits for you: 'syncd plan hr' shows it, 'syncd sync hr' applies it.
schedule = "1d"
path = "people.csv"
"""


@dataclass
class DemoFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "syncd.toml"

    @property
    def people(self) -> Path:
        return self.root / "people.csv"

    @property
    def token_file(self) -> Path:
        return self.root / "scim-token"


def prepare(root: Path, listen: str) -> DemoFolder:
    """Write the demo's config and HR export unless they exist (a user's edits to them are kept)."""
    folder = DemoFolder(root.resolve())
    folder.root.mkdir(parents=True, exist_ok=True)
    if not folder.people.exists():
        with resources.as_file(resources.files("syncd.demo_data") / "people.csv") as packaged:
            shutil.copyfile(packaged, folder.people)
    if not folder.config.exists():
        folder.config.write_text(
            CONFIG_TEMPLATE.format(db=folder.root / "syncd.db", listen=listen, org=DEMO_ORG, source=DEMO_SOURCE),
            encoding="utf-8",
        )
    return folder


def scim_token(folder: DemoFolder) -> str:
    """The demo org's SCIM token: made once and kept in the demo folder (mode 0600) so that reruns can show it."""
    if folder.token_file.exists():
        existing = folder.token_file.read_text(encoding="utf-8").strip()
        if tokens.authenticate(existing) is not None:
            return existing
    org = orgs.get(DEMO_ORG)
    _, secret = tokens.create(org, "scim", description="demo SCIM token", actor="system:demo")
    descriptor = os.open(folder.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret
