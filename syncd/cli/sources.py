"""``syncd sources list``: every source (configured ones and each org's SCIM source) and how its last run went."""

from __future__ import annotations

import argparse

from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.store.models import Organization, Source


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("sources", help="directory sources", description="Inspect sources.")
    sub = parser.add_subparsers(dest="sources_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser(
        "list", help="list sources", description="List sources with their last run, last success and last error."
    )
    add_format(listing)
    listing.set_defaults(handler=run_list)


def _when(value: object) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None  # type: ignore[attr-defined]


def run_list(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    configured = {s.name: s for s in runtime.config.sources}
    rows = []
    for source in Source.select(Source, Organization).join(Organization).order_by(Organization.slug, Source.name):
        settings = configured.get(source.name)
        rows.append(
            {
                "name": source.name,
                "org": source.org.slug,
                "kind": source.kind,
                "precedence": source.precedence,
                "schedule": settings.schedule if settings else ("push" if source.kind == "scim" else None),
                "configured": settings is not None or source.kind == "scim",
                "last_run_at": _when(source.last_run_at),
                "last_success_at": _when(source.last_success_at),
                "last_full_at": _when(source.last_full_at),
                "consecutive_failures": source.consecutive_failures,
                "last_error": source.last_error,
                "notes": source.last_notes.splitlines() if source.last_notes else [],
            }
        )
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
