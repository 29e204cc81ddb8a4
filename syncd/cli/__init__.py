"""The ``syncd`` command line: a subcommand module each, registered here; errors are one line on stderr.

Exit codes (DESIGN.md, "The CLI's machine-readable answers"): 0 success, 1 error, 2 a plan has changes pending,
3 a plan is held by the guard.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from connectors.redaction import redact
from syncd import __version__
from syncd.cli.errors import KNOWN_ERRORS, CliError

# The order of commands in --help; every module of this package with a ``register`` function is a command.
COMMAND_ORDER = (
    "demo",
    "serve",
    "sync",
    "plan",
    "approve",
    "members",
    "sources",
    "orgs",
    "tokens",
    "audit",
    "webhooks",
    "db",
)


def command_modules() -> list[str]:
    """Every command module of this package, in help order (so a new command needs no edit here)."""
    found = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("errors", "output")]
    return sorted(found, key=lambda name: (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else 99, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Identity provisioning sync daemon: SCIM 2.0 in, directories polled, one reconciled org state.",
        epilog="Run 'syncd COMMAND --help' for a command's options. Config: --config FILE or SYNCD_CONFIG.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: $SYNCD_CONFIG, else built-in defaults)"
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in command_modules():
        module = importlib.import_module(f"syncd.cli.{name}")
        if hasattr(module, "register"):
            module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KNOWN_ERRORS as error:
        print(f"syncd: error: {redact(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


__all__ = ["CliError", "build_parser", "main"]
