"""``syncd demo``: the embedded default in one command — a demo org fed by an HR file, then ``syncd serve``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from syncd import demo, shell
from syncd.cli.errors import CliError
from syncd.cli.output import changes
from syncd.pipeline import run_source
from syncd.store.models import Member

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
    parser.add_argument("--no-serve", action="store_true", help="set up and sync, then exit instead of serving")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if args.config:
        raise CliError("syncd demo makes its own config; drop --config (or use 'syncd serve --config FILE')")
    folder = demo.prepare(Path(args.dir), args.listen)
    runtime = shell.start(str(folder.config))
    result = run_source(runtime.config, demo.DEMO_SOURCE, actor=f"source:{demo.DEMO_SOURCE}")
    token = demo.scim_token(folder)
    members = Member.select().where(Member.status == "active").count()
    listen = args.listen
    config_arg = shlex.quote(str(folder.config))
    print(f"syncd demo: org '{demo.DEMO_ORG}' has {members} active members from {folder.people}")
    print(f"  first sync: {changes(result.actions)} applied" + (" (held by the guard)" if result.held else ""))
    print()
    print(f"SCIM base URL:  http://{listen}/scim/v2")
    print(f"SCIM token:     {token}   (also in {folder.token_file})")
    print()
    print("Try next, in another terminal:")
    print(f"  export SYNCD_CONFIG={config_arg}")
    print(f"  syncd members list --org {demo.DEMO_ORG}        # who is in, with which role and teams")
    print(f"  syncd audit list --org {demo.DEMO_ORG}          # the ledger: who, what, when, why")
    print(f"  syncd audit verify --org {demo.DEMO_ORG}")
    print(f"  # edit {folder.people} (remove a row, change a group), then:")
    print(f"  syncd plan {demo.DEMO_SOURCE}                   # what would change and why; nothing is applied")
    print(f"  syncd sync {demo.DEMO_SOURCE}")
    print("  # push a user as an identity provider would (RFC 7644 §3.3), then list the members again:")
    print(
        f"  curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' "
        f"-d '{SCIM_USER}' http://{listen}/scim/v2/Users"
    )
    if args.no_serve:
        return 0
    print()
    print(f"Serving on http://{listen} (Ctrl-C to stop) ...", flush=True)
    from syncd.serve import serve

    return serve(str(folder.config), listen=listen)
