"""``syncd db``: schema migrations."""

from __future__ import annotations

import argparse

from syncd.cli.runtime import start_runtime
from syncd.store import current_version
from syncd.store.migrations import latest_version


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = commands.add_parser("db", help="database schema", description="Manage the database schema.")
    sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    upgrade = sub.add_parser(
        "upgrade",
        help="apply pending migrations",
        description="Apply every pending schema migration (also done at every start).",
    )
    upgrade.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    start_runtime(args)
    print(f"schema at version {current_version()} (latest {latest_version()})")
    return 0
