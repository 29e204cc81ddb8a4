"""An in-memory directory for pipeline tests: records, a config around them, and a connector that reads them.

The connector serves what the test put in the directory, as a real one serves what the directory holds; the code
under test is everything after the read (stage, plan, guard, apply). Tests of whole commands write real export
files for the real file connector instead (``tests/test_cli_reconcile.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.interface import GroupRecord, ReadResult, Snapshot, UserRecord
from syncd.admin import shell
from syncd.config import Config, DatabaseSettings, OrgSettings, Policy, Rule, SourceSettings

RULES = (
    Rule(group="Staff", role="member"),
    Rule(group="Engineering", team="Engineering", team_role="member"),
    Rule(group="IT Admins", role="admin"),
    Rule(group="Owners", role="owner"),
)
LENIENT = Policy(grace_days=30, guard_max_percent=100.0, guard_max_count=1000, transfer_to="it@acme.com")


def user(name: str, *groups: str, domain: str = "acme.com", active: bool = True, **extra: str) -> UserRecord:
    return UserRecord(
        key=f"k-{name}",
        user_name=name,
        email=f"{name}@{domain}",
        display_name=name.title(),
        active=active,
        groups=tuple(groups),
        department=extra.pop("department", None),
        attributes=extra,
    )


def snapshot(*users: UserRecord, groups: tuple[GroupRecord, ...] = (), complete: bool = True, cursor: str = "c1"):
    return Snapshot(list(users), list(groups), cursor=cursor, complete=complete, problems=[] if complete else ["x"])


def make_config(url: str, policy: Policy = LENIENT, rules: tuple[Rule, ...] = RULES) -> Config:
    return Config(
        database=DatabaseSettings(url=url),
        orgs=(OrgSettings(slug="acme", name="Acme", domains=("acme.com",), policy=policy, rules=rules),),
        sources=(SourceSettings(name="hr", org="acme", kind="file", precedence=10, connector=None),),
    )


def declare(config: Config) -> Config:
    shell.declare(config)
    return config


@dataclass
class Directory:
    """What the fake directory holds; ``reads`` records the cursors it was read with."""

    result: ReadResult = field(default_factory=lambda: Snapshot([], []))
    reads: list[str | None] = field(default_factory=list)

    def connector(self, settings: SourceSettings) -> Directory:
        return self

    def read(self, cursor: str | None) -> ReadResult:
        self.reads.append(cursor)
        return self.result
