"""``syncd sync SOURCE``: read a source and apply what it says now (the scheduler does the same on its schedule)."""

from __future__ import annotations

import argparse

from syncd import config
from syncd.cli.errors import CliError
from syncd.cli.output import add_format, changes, print_json
from syncd.cli.plan import (
    EXIT_HELD,
    EXIT_INCOMPLETE,
    closed_after,
    exit_code,
    held_plans,
    plan_document,
    print_plan,
    progress_for,
)
from syncd.cli.runtime import start_runtime
from syncd.service import admin_client
from syncd.sync import orgs, pipeline


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "sync",
        help="run a source now",
        description=(
            "Read SOURCE, stage what it says, plan, guard and apply in one transaction with its new cursor. "
            "Exit 0: applied (or nothing to do); 3: the guard held the plan (see 'syncd approve'); 4: the read was "
            "incomplete (the problems are printed; what was read was applied, nobody was removed, the cursor did not "
            "move; an AD increment blind to deletions between leaver checks also exits 4, though its cursor moves). "
            "With --dry-run, like 'syncd plan SOURCE' (exit 2 when changes are pending)."
        ),
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("source", nargs="?", help="source name (see 'syncd sources list')")
    target.add_argument(
        "--org",
        help="plan and apply the whole org from what is staged, without reading (rule changes, grace periods run out)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan, apply nothing")
    parser.add_argument("--full", action="store_true", help="read the source in full (ignore its cursor)")
    parser.add_argument(
        "--remote",
        action="store_true",
        help=(
            "ask the running 'syncd serve' (server.public_url, else server.listen) to run SOURCE now, under its "
            "lease; the admin token comes from SYNCD_ADMIN_TOKEN_FILE or SYNCD_ADMIN_TOKEN"
        ),
    )
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.remote:
        return run_remote(args)
    runtime = start_runtime(args)
    try:
        with closed_after(progress_for(args.format)) as progress:
            if args.org:
                slug = orgs.get(args.org).slug
                result = pipeline.reconcile_org(
                    runtime.config, slug, dry_run=args.dry_run, actor="admin:cli", progress=progress
                )
            else:
                result = pipeline.run_source(
                    runtime.config, args.source, dry_run=args.dry_run, full=args.full, actor=None, progress=progress
                )
    except pipeline.PipelineError as error:
        raise CliError(str(error)) from None
    if args.dry_run:
        print_plan(result, args.format)
        return exit_code(result, pending_held=bool(held_plans(result.org)))
    if args.format == "json":
        document = plan_document(result)
        document["applied"] = result.applied
        print_json(document)
    else:
        print(summary(result))
        for problem in result.problems:
            print(f"problem: {problem}")
    if result.held:
        return EXIT_HELD
    return 0 if result.complete else EXIT_INCOMPLETE


def summary(result: pipeline.RunResult) -> str:
    if result.held:
        who = f"source {result.source}" if result.source else f"org {result.org}"
        cursor = ", cursor not moved" if result.source else ""
        return (
            f"{who}: plan {result.plan_id} held by the guard ({result.held_reason}); nothing applied{cursor}. "
            f"Review: syncd approve {result.plan_id} --show; apply: syncd approve {result.plan_id}"
        )
    staged = result.stage
    read = ""
    if staged is not None:
        read = (
            f"; staged +{staged.identities_added} ~{staged.identities_updated} -{staged.identities_removed} identities, "
            f"+{staged.memberships_added} -{staged.memberships_removed} memberships"
        )
    partial = " (incomplete read: nothing removed)" if not result.complete else ""
    if staged is not None and staged.blind and len(staged.problems) == 1:
        partial = " (incomplete view: leavers since the last check not known yet)"
    if not result.source:
        return f"org {result.org}: {changes(result.actions)} applied"
    return f"source {result.source}: {changes(result.actions)} applied{read}{partial}"


def run_remote(args: argparse.Namespace) -> int:
    """Trigger the run in the service instead of here, so it takes the same lease as the scheduler's runs."""
    if args.org or args.dry_run:
        raise CliError("--remote runs a SOURCE; drop --org / --dry-run (use 'syncd plan' for a dry run)")
    token = admin_client.admin_token()
    if not token:
        raise CliError(
            "--remote needs an admin token: 'syncd tokens create --org ORG --scope admin', then set "
            "SYNCD_ADMIN_TOKEN_FILE to a file holding it"
        )
    cfg = config.load(args.config)
    try:
        answer = admin_client.trigger_sync(admin_client.service_url(cfg), token, args.source, full=args.full)
    except admin_client.ServiceError as error:
        raise CliError(str(error)) from None
    if args.format == "json":
        print_json(answer)
    elif answer.get("error"):
        print(f"source {args.source}: run {answer.get('run_id')} failed: {answer['error']}")
    else:
        applied = changes(int(answer.get("actions") or 0))
        print(f"source {args.source}: run {answer.get('run_id')} {answer.get('result')}: {applied}")
        for problem in answer.get("problems") or []:
            print(f"problem: {problem}")
    if answer.get("error"):
        return 1
    if answer.get("held"):
        return EXIT_HELD
    return EXIT_INCOMPLETE if answer.get("complete") is False else 0
