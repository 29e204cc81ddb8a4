"""``syncd webhooks``: see and drive webhook delivery by hand (the service delivers on its own after each commit)."""

from __future__ import annotations

import argparse
import sys

import peewee

from syncd.cli.output import add_format, print_json, print_table
from syncd.cli.runtime import start_runtime
from syncd.clock import iso
from syncd.service import webhooks
from syncd.store.models import Organization, OutboxEvent
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
    revived = 0
    if args.retry_given_up:
        revived = (
            OutboxEvent.update(attempts=0, next_attempt_at=None)
            .where(OutboxEvent.delivered_at.is_null(), OutboxEvent.attempts >= webhooks.MAX_ATTEMPTS)
            .execute()
        )
    total = webhooks.DeliveryReport()
    while True:
        report = webhooks.deliver_due(runtime.config)
        for name in ("delivered", "failed", "gave_up", "deferred"):
            getattr(total, name).extend(getattr(report, name))
        if report.deferred or not (report.delivered or report.failed or report.gave_up):
            break
    counts = {name: len(getattr(total, name)) for name in ("delivered", "failed", "gave_up", "deferred")}
    if args.format == "json":
        print_json({**counts, "revived": revived})
    else:
        print(
            f"delivered {counts['delivered']}, failed {counts['failed']} (retried later), gave up {counts['gave_up']}, "
            f"deferred {counts['deferred']}" + (f"; {revived} given-up events revived" if revived else "")
        )
    if counts["failed"] or counts["gave_up"]:
        first = OutboxEvent.get_by_id((total.failed + total.gave_up)[0])
        print(f"syncd: error: webhook delivery failed: {first.last_error}", file=sys.stderr)
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    start_runtime(args)
    undelivered = OutboxEvent.delivered_at.is_null()
    given_up = OutboxEvent.attempts >= webhooks.MAX_ATTEMPTS
    query = (
        OutboxEvent.select(
            Organization.slug,
            peewee.fn.SUM(peewee.Case(None, [(given_up, 0)], 1)).alias("pending"),
            peewee.fn.SUM(peewee.Case(None, [(given_up, 1)], 0)).alias("given_up"),
            peewee.fn.MIN(OutboxEvent.created_at).alias("oldest"),
        )
        .join(Organization)
        .where(undelivered)
        .group_by(Organization.slug)
        .order_by(Organization.slug)
    )
    if args.org:
        query = query.where(Organization.slug == orgs.get(args.org).slug)
    rows = [
        {"org": slug, "pending": int(pending), "given_up": int(gave_up), "oldest": iso(oldest)}
        for slug, pending, gave_up, oldest in query.tuples()
    ]
    if args.format == "json":
        print_json(rows)
    else:
        print_table(["org", "pending", "given_up", "oldest"], [tuple(r.values()) for r in rows])
    return 0
