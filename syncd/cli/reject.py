"""``syncd reject PLAN_ID``: discard a plan the guard held; nothing it holds is applied, and the ledger says who."""

from __future__ import annotations

import argparse

from syncd.cli.approve import add_by, decider
from syncd.cli.errors import CliError
from syncd.cli.output import add_format, changes, print_json
from syncd.cli.runtime import start_runtime
from syncd.sync import pipeline


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "reject",
        help="discard a held plan",
        description=(
            "Discard the plan PLAN_ID that the guard held (a source run's plan, or the removals SCIM pushes asked for "
            "past the SCIM guard): nothing it holds is applied, and the decision is ledgered as plan.rejected with "
            "who made it (--by). The sources still say what they say: the next plan proposes those changes again, "
            "guarded. Exit 0: rejected; 1: no such held plan."
        ),
    )
    parser.add_argument("plan_id", metavar="PLAN_ID", help="a held plan's id, as listed by 'syncd plan --org ORG'")
    add_by(parser, "rejects")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    start_runtime(args)
    actor = decider(args)
    try:
        result = pipeline.reject(args.plan_id, actor=actor)
    except pipeline.PipelineError as error:
        raise CliError(str(error)) from None
    if args.format == "json":
        print_json(
            {"plan_id": args.plan_id, "org": result.org, "rejected": True, "by": actor, "discarded": result.actions}
        )
    else:
        print(f"plan {args.plan_id} rejected by {actor}: {changes(result.actions)} discarded")
    return 0
