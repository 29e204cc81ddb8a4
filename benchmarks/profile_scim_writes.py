"""SCIM writes in one process, for profiles and instruction counts: bench_scim's create, PUT and DELETE bodies sent
through Flask's test client to ``scim.create_app`` on a fresh SQLite store, each write reconciled and ledgered.

The org is planned whole first (as ``syncd serve``'s housekeeping does), 300 users are seeded with one Bulk POST and
250 of them put in a group, and every path is warmed once; then ``--ops`` run in order, ``-n`` each (``delete``
deletes the users ``create`` made). It prints the process CPU per operation. On a shared machine CPU time is noisy;
instruction counts are not: run it under callgrind with and without an operation and divide the difference by ``-n``:

    python benchmarks/profile_scim_writes.py --ops create,put,delete          # CPU ms per operation
    python benchmarks/profile_scim_writes.py --ops put --profile put.prof    # cProfile of the PUTs only
    PYTHONHASHSEED=0 valgrind --tool=callgrind python benchmarks/profile_scim_writes.py --ops create -n 100
    PYTHONHASHSEED=0 valgrind --tool=callgrind python benchmarks/profile_scim_writes.py --ops none -n 100
"""

from __future__ import annotations

import argparse
import cProfile
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_scim import BULK_URN, GROUP_URN, user_body  # noqa: E402

SEEDED = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default="create,put,delete", help="comma-separated: create, put, delete, none")
    parser.add_argument("-n", type=int, default=100, help="operations of each kind (default 100)")
    parser.add_argument("--profile", help="write a cProfile of the operations (not the setup) to this file")
    args = parser.parse_args(argv)

    from scim import create_app
    from syncd import config as config_module
    from syncd.admin import tokens
    from syncd.store import open_database, upgrade
    from syncd.sync import orgs, pipeline

    work = Path(tempfile.mkdtemp(prefix="profile-scim-"))
    url = f"sqlite:///{work / 'syncd.db'}"
    open_database(url)
    upgrade()
    org = orgs.create("bench", "Benchmark")
    _, token = tokens.create(org, "scim")
    (work / "syncd.toml").write_text(f'[database]\nurl = "{url}"\n\n[server]\nmax_body_bytes = 4194304\n')
    config = config_module.load(str(work / "syncd.toml"))
    pipeline.reconcile_org(config, org.slug)
    client = create_app(config).test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def send(method: str, path: str, body: Any = None) -> Any:
        answer = client.open(
            "/scim/v2" + path, method=method, data=None if body is None else json.dumps(body), headers=headers
        )
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.data!r}")
        return answer.get_json(silent=True)

    operations = [
        {"method": "POST", "path": "/Users", "bulkId": str(i), "data": user_body(f"user{i:06d}")} for i in range(SEEDED)
    ]
    done = send("POST", "/Bulk", {"schemas": [BULK_URN], "Operations": operations})
    ids = [outcome["location"].rsplit("/", 1)[1] for outcome in done["Operations"]]
    send(
        "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "big", "members": [{"value": i} for i in ids[:250]]}
    )
    send("PUT", f"/Users/{ids[-1]}", {**user_body(f"user{SEEDED - 1:06d}"), "title": "warm"})
    send("DELETE", f"/Users/{send('POST', '/Users', user_body('warm'))['id']}")

    rng = random.Random(7)
    created: list[str] = []
    profile = cProfile.Profile() if args.profile else None
    for op in args.ops.split(","):
        started = time.process_time()
        if profile:
            profile.enable()
        if op == "create":
            created = [send("POST", "/Users", user_body(f"new{i:06d}"))["id"] for i in range(args.n)]
        elif op == "put":
            for i in rng.sample(range(SEEDED - 1), args.n):
                send("PUT", f"/Users/{ids[i]}", {**user_body(f"user{i:06d}"), "title": f"title {i}"})
        elif op == "delete":
            for key in created:
                send("DELETE", f"/Users/{key}")
        elif op != "none":
            raise SystemExit(f"unknown operation {op!r}; use create, put, delete or none")
        if profile:
            profile.disable()
        if op != "none":
            print(f"{op}: {(time.process_time() - started) * 1000 / args.n:.2f} ms CPU per operation")
    if profile:
        profile.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
