"""``syncd orgs``: create and list organizations (tenants)."""

from __future__ import annotations

import argparse

from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.sync import orgs


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("orgs", help="organizations", description="Create and list organizations.")
    sub = parser.add_subparsers(dest="orgs_command", metavar="SUBCOMMAND", required=True)
    create = sub.add_parser(
        "create", help="create an organization", description="Create an organization and its SCIM source."
    )
    create.add_argument("slug", help="short unique name: lowercase letters, digits, dashes")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="D",
        help="an email domain of the org (repeatable); others become guests unless a rule says otherwise",
    )
    add_format(create)
    create.set_defaults(handler=run_create)
    listing = sub.add_parser("list", help="list organizations", description="List organizations.")
    add_format(listing)
    listing.set_defaults(handler=run_list)


def run_create(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.create(args.slug, args.name, args.domain)
    if args.format == "json":
        print_json({**orgs.org_state(org), "scim_source": orgs.scim_source_name(org.slug)})
        return 0
    print(f"created org {org.slug} ({org.name}); SCIM source {orgs.scim_source_name(org.slug)}")
    print(f"next: syncd tokens create --org {org.slug} --scope scim")
    return 0


def run_list(args: argparse.Namespace) -> int:
    start_runtime(args)
    rows = orgs.listing()
    if args.format == "json":
        print_json(rows)
    else:
        print_table(
            ["slug", "name", "domains", "status", "active members"],
            [(r["slug"], r["name"], ",".join(r["domains"]), r["status"], r["active_members"]) for r in rows],
        )
    return 0
