"""``syncd members``: list and show an org's members, and set (and pin) an admin's role override."""

from __future__ import annotations

import argparse
from typing import Any

from syncd.admin import history, members
from syncd.cli.errors import CliError
from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.clock import utcnow
from syncd.config import ROLES
from syncd.sync import orgs


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("members", help="org members", description="List, show and set roles of members.")
    sub = parser.add_subparsers(dest="members_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="list members", description="List an org's members, roles and teams.")
    listing.add_argument("--org", required=True, help="org slug")
    listing.add_argument("--status", choices=("active", "suspended", "deprovisioned"), help="only this status")
    listing.add_argument(
        "--at", metavar="TIMESTAMP", help="answer for that moment, from the ledger (ISO 8601, UTC unless an offset)"
    )
    add_format(listing)
    listing.set_defaults(handler=run_list)
    show = sub.add_parser(
        "show", help="show one member", description="Show a member, the identities behind them and recent changes."
    )
    show.add_argument("--org", required=True, help="org slug")
    show.add_argument("member", metavar="EMAIL", help="email (or match key)")
    add_format(show)
    show.set_defaults(handler=run_show)
    set_role = sub.add_parser(
        "set-role",
        help="set a member's role",
        description=(
            "Set a member's org role, ledgered. Without --pin the next sync may change it back to what the rules "
            "say; --pin keeps it until --unpin, which hands the member back to the rules at once."
        ),
    )
    set_role.add_argument("--org", required=True, help="org slug")
    set_role.add_argument("member", metavar="EMAIL", help="email (or match key)")
    set_role.add_argument("role", choices=ROLES, metavar="ROLE", help=f"one of {', '.join(ROLES)}")
    pin = set_role.add_mutually_exclusive_group()
    pin.add_argument(
        "--pin", dest="pin", action="store_const", const=True, help="keep this role whatever the rules say"
    )
    pin.add_argument("--unpin", dest="pin", action="store_const", const=False, help="let the rules decide again")
    add_format(set_role)
    set_role.set_defaults(handler=run_set_role, pin=None)


def run_list(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    at = history.parse_moment(args.at, "--at") if args.at else None
    rows = history.members_at(org.id, at) if at else members.listing(org)
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    for row in rows:
        row.pop("match_key", None)
    if args.format == "json":
        print_json(rows)
        return 0
    print_table(
        ["email", "display name", "status", "role", "teams", "sources"],
        [
            (
                r["email"] or r["user_name"],
                r["display_name"],
                r["status"],
                role_text(r),
                teams_text(r),
                ", ".join(r["sources"]),
            )
            for r in rows
        ],
    )
    return 0


def role_text(row: dict[str, Any]) -> str:
    """The role as a person should read it: a suspended member keeps role and teams, but they grant nothing until
    the member is reactivated, so the text says they are dormant."""
    notes = [n for n, on in (("pinned", row["pinned"]), ("dormant", row["status"] == "suspended")) if on]
    return row["role"] + (f" ({', '.join(notes)})" if notes else "")


def teams_text(row: dict[str, Any]) -> str:
    dormant = ", dormant" if row["status"] == "suspended" else ""
    return ", ".join(f"{t['team']} ({t['role']}{dormant})" for t in row["teams"])


def run_show(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    try:
        row = members.detail(org, args.member)
    except members.MemberError as error:
        raise CliError(str(error)) from None
    if args.format == "json":
        print_json(row)
        return 0
    print(f"{row['email'] or row['user_name']} ({row['display_name']})")
    print(f"  status: {row['status']}  role: {role_text(row)}")
    if row["status"] == "suspended":
        print("  role and teams are dormant: they grant nothing until the member is active again")
    if row["suspended_at"]:
        print(f"  suspended at: {row['suspended_at']}")
    if row["deprovisioned_at"]:
        print(f"  deprovisioned at: {row['deprovisioned_at']} (data transferred to {row['transfer_to'] or 'nobody'})")
    print("  teams: " + (teams_text(row) or "none"))
    if row["manager"]:
        print(f"  manager: {row['manager']}")
    for identity in row["identities"]:
        state = "active" if identity["active"] else "disabled"
        print(f"  identity: source {identity['source']}, key {identity['key']}, {identity['user_name']} ({state})")
    for entry in row["history"]:
        print(f"  #{entry['seq']} {entry['at']} {entry['actor']} {entry['action']}: {entry['reason']}")
    return 0


def run_set_role(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    org = orgs.get(args.org)
    try:
        lines = members.set_role(runtime.config, org, args.member, args.role, args.pin, "admin:cli", utcnow())
    except members.MemberError as error:
        raise CliError(str(error)) from None
    if args.format == "json":
        (row,) = members.listing(org, [members.find(org, args.member).match_key])
        row.pop("match_key", None)
        print_json({"org": org.slug, "member": args.member, "changed": bool(lines), "changes": lines, **row})
        return 0
    for line in lines or [f"{args.member}: already {args.role}; nothing changed"]:
        print(line)
    return 0
