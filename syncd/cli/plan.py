"""``syncd plan``: what a source run (or the org's staged state) would change, and why, without applying it.

Exit codes (docs/architecture.md): 0 nothing to do, 2 changes pending, 3 the guard would hold the plan.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from syncd.admin import plans
from syncd.cli.errors import CliError
from syncd.cli.output import Progress, add_format, changes, print_json
from syncd.cli.runtime import start_runtime
from syncd.sync import orgs, pipeline

EXIT_PENDING = 2
EXIT_HELD = 3
EXIT_INCOMPLETE = 4
"""``syncd sync``: applied what was read, but the read was incomplete (rows skipped; nothing removed)."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "plan",
        help="show what a sync would change",
        description=(
            "Read SOURCE and show the plan it would produce, or plan --org ORG from what is already staged "
            "(after a rule change, or to see grace periods run out). Nothing is applied. Plans the guard holds "
            "are listed after the plan with their ids for 'syncd approve'. "
            "Exit 0: nothing to do; 2: changes pending; 3: the guard would hold the plan, or a held plan awaits "
            "approval."
        ),
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("source", nargs="?", help="source name (see 'syncd sources list')")
    target.add_argument("--org", help="plan the whole org from its staged state")
    parser.add_argument("--full", action="store_true", help="read the source in full (ignore its cursor)")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    runtime = start_runtime(args)
    try:
        if args.org:
            result = pipeline.plan_org(runtime.config, orgs.get(args.org).slug)
        else:
            with closed_after(progress_for(args.format)) as progress:
                result = pipeline.run_source(
                    runtime.config, args.source, dry_run=True, full=args.full, progress=progress
                )
    except pipeline.PipelineError as error:
        raise CliError(str(error)) from None
    print_plan(result, args.format)
    return exit_code(result, pending_held=bool(held_plans(result.org)))


def exit_code(result: pipeline.RunResult, pending_held: bool = False) -> int:
    """3 when this plan would be held or one already is (a held plan waits for a person: scripts must notice)."""
    if result.held or pending_held:
        return EXIT_HELD
    return EXIT_PENDING if result.actions else 0


def plan_document(result: pipeline.RunResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "plan_id": result.plan_id,
        "org": result.org,
        "source": result.source or None,
        "held": result.held,
        "held_reason": result.held_reason,
        "complete": result.complete,
        "problems": result.problems,
        "notes": list(plan.notes) if plan is not None else [],
        "actions": [a.as_dict() for a in plan.actions] if plan else [],
        # An applied whole-org run keeps only its first actions to show (docs/architecture.md, "Memory of a
        # whole-org plan"); the count is always the plan's.
        "action_count": result.actions,
    }


def print_plan(result: pipeline.RunResult, fmt: str) -> None:
    if fmt == "json":
        document = plan_document(result)
        document["held_plans"] = held_plans(result.org)
        print_json(document)
        return
    plan = result.plan
    where = f"source {result.source} (org {result.org})" if result.source else f"org {result.org}"
    count = len(plan.actions) if plan else 0
    print(f"plan for {where}: {changes(count)}")
    for action in plan.actions if plan else ():
        print(f"  {action.line()}")
    for problem in result.problems:
        print(f"problem: {problem}")
    for note in plan.notes if plan is not None else ():
        print(f"note: {note}")
    if result.held_reason:
        print(f"held by the guard: {result.held_reason}")
    for held in held_plans(result.org):
        what = f"{held['removals']} members' removals pushed by SCIM, " if held["kind"] == "scim-removals" else ""
        print(
            f"pending: plan {held['plan_id']} held since {held['created_at']} ({what}{held['reason']}); "
            f"'syncd approve {held['plan_id']} --show' to review, 'syncd approve {held['plan_id']}' to apply, "
            f"'syncd reject {held['plan_id']} --by NAME' to discard"
        )


def held_plans(org_slug: str) -> list[dict[str, Any]]:
    return plans.held_plans(orgs.get(org_slug).id)


class PhaseProgress:
    """The pipeline's ``progress(phase, done, total)`` on a terminal: a line per phase, a counter for counted ones.

    :meth:`close` ends an open counter line; the commands call it before printing their result (or an error).
    """

    def __init__(self) -> None:
        self.bars: dict[str, Progress] = {}

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if phase not in self.bars:
            self.close()
            self.bars[phase] = Progress(phase, total)
            if total is None:
                sys.stderr.write(f"{phase}…\n")
        bar = self.bars[phase]
        if total is not None:
            bar.advance(done - bar.done)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.finish()


def progress_for(fmt: str) -> PhaseProgress | None:
    """Phase names and an apply counter on stderr, when it is a terminal."""
    return PhaseProgress() if sys.stderr.isatty() else None


@contextmanager
def closed_after(progress: PhaseProgress | None) -> Iterator[PhaseProgress | None]:
    """Run the block with ``progress``, then close its line, so the result or an error starts on a line of its own."""
    try:
        yield progress
    finally:
        if progress is not None:
            progress.close()
