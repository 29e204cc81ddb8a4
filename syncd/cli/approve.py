"""``syncd approve PLAN_ID``: apply a plan the guard held, exactly as held, if nothing it came from has changed."""

from __future__ import annotations

import argparse

from syncd.admin import plans
from syncd.cli.errors import CliError
from syncd.cli.output import add_format, changes, print_json
from syncd.cli.plan import EXIT_HELD
from syncd.cli.runtime import start_runtime
from syncd.sync import pipeline


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "approve",
        help="apply a held plan",
        description=(
            "Apply the plan PLAN_ID that the guard held. The source is read again from the same cursor; if "
            "anything the plan was computed from changed, the plan is marked stale (ledgered) and a new plan is made "
            "and guarded like any run. Exit 0: applied; 3: the new plan is held again."
        ),
    )
    parser.add_argument(
        "plan_id",
        metavar="PLAN_ID",
        help=(
            "a held plan's id: printed by the 'syncd sync' that was held, listed as 'pending: plan ID' by "
            "'syncd plan --org ORG' (and by 'syncd plan SOURCE'), and in the service's log line for a held run"
        ),
    )
    parser.add_argument("--show", action="store_true", help="print the held plan, apply nothing")
    add_by(parser, "approves")
    add_format(parser)
    parser.set_defaults(handler=run)


def add_by(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--by",
        metavar="NAME",
        help=f"who {verb} (recorded in the ledger as admin:NAME; default: admin:cli)",
    )


def decider(args: argparse.Namespace) -> str:
    """The ledger actor of a decision: ``admin:NAME`` from ``--by``, else ``admin:cli``."""
    name = (args.by or "").strip()
    if args.by is not None and (not name or any(c.isspace() or not c.isprintable() for c in name)):
        raise CliError("--by: give a name without spaces, e.g. --by alice@acme.com")
    return f"admin:{name}" if name else "admin:cli"


def run(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    if args.show:
        return show(args.plan_id, args.format)
    try:
        result = pipeline.approve(runtime.config, args.plan_id, actor=decider(args))
    except pipeline.PipelineError as error:
        raise CliError(str(error)) from None
    if args.format == "json":
        print_json(
            {
                "plan_id": args.plan_id,
                "stale": result.stale,
                "applied": result.applied,
                "held": result.held,
                "new_plan_id": result.plan_id if result.stale else None,
                "actions": result.actions,
            }
        )
    elif result.stale:
        print(f"plan {args.plan_id} is stale: what it was computed from changed since it was held; planned again")
        if result.held:
            print(f"the new plan {result.plan_id} is held too ({result.held_reason}); review it before approving")
        else:
            print(f"applied the new plan: {changes(result.actions)}")
    else:
        print(f"plan {args.plan_id} approved: {changes(result.actions)} applied")
    return EXIT_HELD if result.held else 0


def show(plan_id: str, fmt: str) -> int:
    plan = plans.find(plan_id)
    if plan is None:
        raise CliError(f"plan {plan_id}: no such plan; held plans are listed by 'syncd plan --org ORG'")
    if fmt == "json":
        print_json(
            {
                "plan_id": plan.plan_id,
                "org": plan.org,
                "held": plan.status == "held",
                "status": plan.status,
                "held_reason": plan.reason,
                "actions": [a.as_dict() for a in plan.actions],
            }
        )
    else:
        print(f"plan {plan.plan_id} for org {plan.org}: {plan.status}, {changes(len(plan.actions))} ({plan.reason})")
        for action in plan.actions:
            print(f"  {action.line()}")
    return EXIT_HELD if plan.status == "held" else 0
