"""``syncd sources list``: every source (configured ones and each org's SCIM source) and how its last run went;
``syncd sources show NAME``: one source in sections (its state, the identities that join no member, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from syncd.admin import sources
from syncd.cli.errors import CliError
from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("sources", help="directory sources", description="Inspect sources.")
    sub = parser.add_subparsers(dest="sources_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser(
        "list", help="list sources", description="List sources with their last run, last success and last error."
    )
    add_format(listing)
    listing.set_defaults(handler=run_list)
    show = sub.add_parser(
        "show",
        help="show one source",
        description=(
            "Show one source in sections: its state (kind, org, last run, last error) and the identities it holds "
            "that join no member because they lack the org's match_on key. Exit 0; 1 when there is no such source."
        ),
    )
    show.add_argument("name", metavar="NAME", help="source name (see 'syncd sources list'; SCIM: scim:ORG)")
    add_format(show)
    show.set_defaults(handler=run_show)


def run_list(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    rows = sources.listing(runtime.config)
    if args.format == "json":
        print_json(rows)
    else:
        print_table(
            ["name", "org", "kind", "schedule", "last success", "failures", "last error"],
            [
                (
                    r["name"],
                    r["org"],
                    r["kind"],
                    r["schedule"] or "(not in config)",
                    r["last_success_at"] or "never",
                    r["consecutive_failures"],
                    r["last_error"] or "",
                )
                for r in rows
            ],
        )
    return 0


SectionValue = tuple[Any, list[str]]
"""A section's JSON value and its text lines."""


STATE_KEYS = (
    "name",
    "org",
    "kind",
    "precedence",
    "schedule",
    "last_run_at",
    "last_success_at",
    "last_full_at",
    "consecutive_failures",
    "last_error",
)
"""What the [source] section shows of the source's listing (``syncd sources list --format json``)."""


def _state_section(source: dict[str, Any]) -> SectionValue:
    value = {key: source[key] for key in STATE_KEYS}
    return value, [f"{key}: {'' if shown is None else shown}" for key, shown in value.items()]


def _unmatched_section(source: dict[str, Any]) -> SectionValue:
    found = sources.unjoined(source["name"])
    value = [
        {"id": u.key, "user_name": u.user_name, "email": u.email, "external_id": u.external_id}
        for u in found.identities
    ]
    lines = [f"{len(value)} identities without {found.match_on} join no member"] if value else ["none"]
    lines += [f"  {u.key}  userName {u.user_name!r}" for u in found.identities]
    return value, lines


def _notes_section(source: dict[str, Any]) -> SectionValue:
    """What the last read could and could not see (an AD account blind to deletions, and how leavers are found)."""
    return source["notes"], source["notes"] or ["none"]


SECTIONS: dict[str, Callable[[dict[str, Any]], SectionValue]] = {
    "source": _state_section,
    "notes": _notes_section,
    "unmatched": _unmatched_section,
}
"""The sections of ``syncd sources show``, in order; a new one is a function added here (its key is its JSON key)."""


def run_show(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    source = sources.find(runtime.config, args.name)
    if source is None:
        raise CliError(f"no source named {args.name!r}; see 'syncd sources list'")
    sections = {name: build(source) for name, build in SECTIONS.items()}
    if args.format == "json":
        print_json({name: value for name, (value, _) in sections.items()})
        return 0
    for index, (name, (_, lines)) in enumerate(sections.items()):
        print(("\n" if index else "") + f"[{name}]")
        for line in lines:
            print(line)
    return 0
