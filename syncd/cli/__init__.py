"""The ``syncd`` command line: a subcommand module each, registered here; errors are one line on stderr.

Does not hold rules of its own or run queries: commands parse, call admin, sync and service, and format the plain
values they return; no command imports a model or peewee (docs/architecture.md, "Layers"; tests/test_import_rules.py).

Exit codes: 0 success; 1 error (usage errors too: one line on stderr naming the fix); 2 a plan has changes pending;
3 a plan is held by the guard; 4 ``syncd sync`` applied what it could but the read was incomplete (nothing removed;
the problems are printed). No command prints a traceback: a domain error is one line, and an unexpected one is one
line too (``--verbose`` adds the traceback for a bug report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from syncd import __version__, logs
from syncd.cli.errors import KNOWN_ERRORS, CliError
from syncd.common.redaction import redact
from syncd.store.db import UNREACHABLE, unavailable

EXIT_ERROR = 1

# The order of commands in --help; every module of this package with a ``register`` function is a command.
COMMAND_ORDER = (
    "demo",
    "serve",
    "sync",
    "plan",
    "approve",
    "reject",
    "members",
    "sources",
    "orgs",
    "tokens",
    "audit",
    "webhooks",
    "db",
)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line and exit 1 (argparse's own exit 2 would read as "changes pending")."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def command_modules() -> list[str]:
    """Every command module of this package, in help order (so a new command needs no edit here)."""
    found = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("errors", "output", "runtime")]
    return sorted(found, key=lambda name: (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else 99, name))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="syncd",
        description="Identity provisioning sync daemon: SCIM 2.0 in, directories polled, one reconciled org state.",
        epilog=(
            "Run 'syncd COMMAND --help' for a command's options. Config: --config FILE, else $SYNCD_CONFIG, else "
            "/etc/syncd/syncd.toml. Exit codes: 0 ok, 1 error, 2 plan has changes pending, 3 plan held by the guard, "
            "4 sync read incomplete."
        ),
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (default: $SYNCD_CONFIG, else /etc/syncd/syncd.toml)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log which config file is used and what runs; tracebacks of bugs"
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
    with verbose_logging(args.verbose):
        return run(args)


@contextmanager
def verbose_logging(on: bool) -> Iterator[None]:
    """``--verbose``: debug events on stderr for this command, the logging set-up restored after it (``main`` may
    run several commands in one process, as the tests do)."""
    if not on:
        yield
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("logfmt", "debug")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def run(args: argparse.Namespace) -> int:
    """Run the chosen command; every failure is one line on stderr (see the module docstring)."""
    try:
        return int(args.handler(args) or 0)
    except KNOWN_ERRORS as error:
        return fail(str(error))
    except UNREACHABLE as error:
        return fail(str(unavailable(error)))
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the last line of defence: a bug is one line, not a traceback
        if args.verbose:
            traceback.print_exc()
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return fail(
            f"unexpected {type(error).__name__}: {first} (a bug in syncd; rerun with --verbose for the traceback "
            "and report it)"
        )


def fail(message: str) -> int:
    """The one-line error: secrets masked (syncd.common.redaction), whatever the message came from."""
    print(f"syncd: error: {redact(message)}", file=sys.stderr)
    return EXIT_ERROR


__all__ = ["CliError", "build_parser", "main"]
