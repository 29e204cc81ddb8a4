"""``syncd demo``: the embedded default in one command — a demo org fed by an HR file, then ``syncd serve``."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from syncd import demo
from syncd.admin import shell
from syncd.cli.errors import CliError
from syncd.cli.output import changes, plural
from syncd.config import ServerSettings
from syncd.sync import orgs
from syncd.sync.pipeline import run_source

SCIM_USER = (
    '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"eve@demo.example",'
    '"name":{"givenName":"Eve","familyName":"Example"},"emails":[{"value":"eve@demo.example","primary":true}]}'
)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "demo",
        help="start a demo: SQLite, a demo org, an HR file source, SCIM on 127.0.0.1",
        description=(
            "Create (or reuse) a demo folder holding a config, a SQLite store, an HR export as a file source and a "
            "SCIM token; run the first sync; print what to try next; then serve like 'syncd serve' until Ctrl-C."
        ),
    )
    parser.add_argument("--dir", default=".syncd-demo", help="demo folder (default: .syncd-demo)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on (default: 127.0.0.1:8080)")
    parser.add_argument(
        "--metrics-listen",
        default=ServerSettings.metrics_listen,
        help=f"HOST:PORT of /metrics (default: {ServerSettings.metrics_listen}; '' turns it off)",
    )
    parser.add_argument("--no-serve", action="store_true", help="set up and sync, then exit instead of serving")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if args.config:
        raise CliError("syncd demo makes its own config; drop --config (or use 'syncd serve --config FILE')")
    from syncd.service.serve import ServeError, check_listen, parse_listen, serve

    parse_listen(args.listen, "--listen")
    if not args.no_serve:
        try:
            check_listen(args.listen)
            if args.metrics_listen:
                check_listen(args.metrics_listen, "--metrics-listen", "--metrics-listen")
        except ServeError as error:
            raise CliError(f"{error} (or --no-serve to only set up and sync)") from None
    try:
        folder = demo.prepare(Path(args.dir), args.listen)
    except OSError as error:
        raise CliError(
            f"--dir {args.dir}: cannot make the demo folder there ({error.strerror}); choose another with --dir"
        ) from None
    runtime = shell.start(str(folder.config))
    result = run_source(runtime.config, demo.DEMO_SOURCE, actor=f"source:{demo.DEMO_SOURCE}")
    token = demo.scim_token(folder)
    members = next(org["active_members"] for org in orgs.listing() if org["slug"] == demo.DEMO_ORG)
    listen = args.listen
    syncd = syncd_command()
    config_arg = shlex.quote(str(folder.config))
    print(f"syncd demo: org '{demo.DEMO_ORG}' has {plural(members, 'active member')} from {folder.people}")
    print(f"  first sync: {changes(result.actions)} applied" + (" (held by the guard)" if result.held else ""))
    print()
    if not args.no_serve:
        print(f"SCIM base URL:  http://{listen}/scim/v2")
    print(f"SCIM token:     {token}   (also in {folder.token_file})")
    print()
    print("Try next, in another terminal:" if not args.no_serve else "Try next:")
    print(f"  export SYNCD_CONFIG={config_arg}")
    steps = [
        (f"{syncd} members list --org {demo.DEMO_ORG}", "who is in, with which role and teams"),
        (f"{syncd} audit list --org {demo.DEMO_ORG}", "the ledger: who, what, when, why"),
        (f"{syncd} audit verify --org {demo.DEMO_ORG}", "the hash chain is intact"),
        (f"# edit {folder.people} (remove a row, change a group), then:", ""),
        (f"{syncd} plan {demo.DEMO_SOURCE}", "what would change and why; nothing is applied"),
        (f"{syncd} sync {demo.DEMO_SOURCE}", "apply it (the demo reads the file by itself once a day)"),
    ]
    if args.no_serve:
        steps.append((f"{syncd} serve", "serve SCIM and run the schedule, as 'syncd demo' without --no-serve does"))
    width = max(len(command) for command, why in steps if why)
    for command, why in steps:
        print(f"  {command.ljust(width)}   # {why}" if why else f"  {command}")
    if args.no_serve:
        return 0
    print("  # push a user as an identity provider would (RFC 7644 §3.3), then list the members again:")
    print(
        f"  curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' "
        f"-d '{SCIM_USER}' http://{listen}/scim/v2/Users"
    )
    print()
    print(f"Serving on http://{listen} (Ctrl-C to stop) ...", flush=True)
    try:
        return serve(str(folder.config), listen=listen, metrics_listen=args.metrics_listen)
    except ServeError as error:
        raise CliError(str(error)) from None


def syncd_command() -> str:
    """How to run syncd from the user's shell: ``syncd`` when that is on PATH (an activated virtualenv), else the
    full path of the script next to this Python (``.venv/bin/syncd`` after the README's set-up command)."""
    script = Path(sys.executable).parent / "syncd"
    on_path = shutil.which("syncd")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "syncd"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m syncd"
