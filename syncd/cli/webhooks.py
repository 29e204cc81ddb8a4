"""``syncd webhooks``: see and drive webhook delivery by hand (the service delivers on its own after each commit)."""

from __future__ import annotations

import argparse
import sys

from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.service import webhooks
from syncd.sync import orgs


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "webhooks", help="webhook delivery", description="See and drive delivery of outbox events to [[webhooks]]."
    )
    sub = parser.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)
    deliver = sub.add_parser(
        "deliver",
        help="deliver due events now",
        description="Send every due outbox event once (retries keep their backoff). Exit 1 if any delivery failed.",
    )
    deliver.add_argument(
        "--retry-given-up",
        action="store_true",
        help=f"first give events that failed {webhooks.MAX_ATTEMPTS} times a fresh set of attempts",
    )
    add_format(deliver)
    deliver.set_defaults(handler=run_deliver)
    status = sub.add_parser(
        "status", help="undelivered events per org", description="Count undelivered outbox events per org."
    )
    status.add_argument("--org", help="only this org")
    add_format(status)
    status.set_defaults(handler=run_status)


def run_deliver(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    revived = webhooks.revive_given_up() if args.retry_given_up else 0
    total = webhooks.deliver_until_idle(runtime.config)
    counts = {name: len(getattr(total, name)) for name in ("delivered", "failed", "gave_up", "deferred")}
    if args.format == "json":
        print_json({**counts, "revived": revived})
    else:
        print(
            f"delivered {counts['delivered']}, failed {counts['failed']} (retried later), gave up {counts['gave_up']}, "
            f"deferred {counts['deferred']}" + (f"; {revived} given-up events revived" if revived else "")
        )
    if counts["failed"] or counts["gave_up"]:
        error = webhooks.last_error((total.failed + total.gave_up)[0])
        print(f"syncd: error: webhook delivery failed: {error}", file=sys.stderr)
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    start_runtime(args)
    rows = webhooks.backlog(orgs.get(args.org).id if args.org else None)
    if args.format == "json":
        print_json(rows)
    else:
        print_table(["org", "pending", "given_up", "oldest"], [tuple(r.values()) for r in rows])
    return 0
