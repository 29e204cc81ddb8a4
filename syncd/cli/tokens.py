"""``syncd tokens``: create, list and revoke org-scoped bearer tokens."""

from __future__ import annotations

import argparse
from datetime import timedelta

from syncd.admin import tokens
from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.clock import iso
from syncd.config import parse_interval
from syncd.sync import orgs


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("tokens", help="API tokens", description="Create, list and revoke bearer tokens.")
    sub = parser.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND", required=True)
    create = sub.add_parser(
        "create",
        help="create a token",
        description="Create a token for one org. It is printed once, alone on the last line; only its hash is kept.",
    )
    create.add_argument("--org", required=True, help="org slug")
    create.add_argument(
        "--scope",
        required=True,
        choices=tokens.SCOPES,
        help="scim: SCIM provisioning; admin: admin API; read: read-only",
    )
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d, 12h (default: never)")
    create.add_argument("--description", default="", help="what the token is for (e.g. 'Entra provisioning')")
    create.set_defaults(handler=run_create)
    listing = sub.add_parser("list", help="list tokens", description="List tokens (never their secrets).")
    listing.add_argument("--org", help="only this org's tokens")
    add_format(listing)
    listing.set_defaults(handler=run_list)
    revoke = sub.add_parser(
        "revoke", help="revoke a token", description="Revoke a token by id; it stops working at once."
    )
    revoke.add_argument("id", type=int, help="token id from 'syncd tokens list'")
    add_format(revoke)
    revoke.set_defaults(handler=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    expires = timedelta(seconds=parse_interval(args.expires_in, "--expires-in")) if args.expires_in else None
    row, secret = tokens.create(org, args.scope, expires, args.description)
    until = f", expires {iso(row.expires_at)}" if row.expires_at else ""
    print(f"token {row.id} for org {org.slug}, scope {row.scope}{until}. Shown once; store it now:")
    print(secret)
    return 0


def run_list(args: argparse.Namespace) -> int:
    start_runtime(args)
    rows = tokens.listing(orgs.get(args.org) if args.org else None)
    if args.format == "json":
        print_json(rows)
    else:
        print_table(
            ["id", "org", "scope", "prefix", "state", "expires_at", "description"],
            [
                (r["id"], r["org"], r["scope"], r["prefix"], r["state"], r["expires_at"] or "never", r["description"])
                for r in rows
            ],
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    start_runtime(args)
    row = tokens.revoke(args.id)
    if args.format == "json":
        print_json({"id": row.id, "org": row.org.slug, "scope": row.scope, "revoked_at": iso(row.revoked_at)})
        return 0
    print(f"token {row.id} revoked")
    return 0
