"""Entra read benchmark: a full sync and a 1,000-change incremental round of a 100,000-user, 2,000-group tenant.

The fake Graph (tests/fakes/graph.py) runs in its own process over real HTTPS on 127.0.0.1, with a fixed latency
added to every Graph request (default 150 ms, about what a 999-object directory delta page takes from Graph), pages
of at most 999 objects and at most 1,000 member references (a large group continues on the next page). The
connector is measured at read level (connector.read → Snapshot / Delta, no store); the baseline is the same paging
done with a bare requests session (follow the links, parse JSON, nothing else), so the ratio is the connector's
own cost on top of the protocol.

    python benchmarks/bench_entra.py [--users 100000] [--groups 2000] [--changes 1000] [--latency 0.15]
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.azure import Connector, Settings  # noqa: E402
from connectors.interface import Delta, Snapshot  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402


def serve(conn: multiprocessing.connection.Connection, directory: str) -> None:
    """The fake tenant's process: answers HTTPS, and commands from the benchmark over ``conn``."""
    fake = FakeGraph(Path(directory)).start()
    conn.send((fake.url, str(fake.ca_file), fake.tenant_id, fake.client_id, fake.client_secret))
    rng = random.Random(7)
    users: list[str] = []
    groups: list[str] = []
    while True:
        command, argument = conn.recv()
        if command == "load":
            user_count, group_count = argument
            departments = ["Engineering", "Sales", "Finance", "Support", "Legal", "Operations"]
            for i in range(user_count):
                users.append(
                    fake.add_user(
                        name=f"user{i:06d}",
                        journal=False,
                        department=departments[i % len(departments)],
                        jobTitle="Staff",
                        employeeId=f"E{i:06d}",
                        givenName=f"Given{i}",
                        surname=f"Family{i}",
                    )
                )
            # Every user in two groups; sizes vary, from a handful to a few thousand members.
            groups = [fake.add_group(f"Group {g:04d}", journal=False) for g in range(group_count)]
            weights = [1.0 / (1 + g % 50) for g in range(group_count)]
            memberships = 0
            for user in users:
                for group in set(rng.choices(groups, weights=weights, k=2)):
                    fake.add_member(group, user, journal=False)
                    memberships += 1
            conn.send(memberships)
        elif command == "change":
            count = argument
            changes = 0
            while changes < count:
                roll = rng.random()
                if roll < 0.5:
                    fake.update_user(rng.choice(users), jobTitle=f"Title {changes}")
                elif roll < 0.6:
                    fake.update_user(rng.choice(users), accountEnabled=False)
                elif roll < 0.7:
                    users.append(fake.add_user(name=f"new{changes:06d}"))
                elif roll < 0.75:
                    victim = users.pop(rng.randrange(len(users)))
                    fake.delete_user(victim)
                elif roll < 0.9:
                    fake.add_member(rng.choice(groups), rng.choice(users))
                else:
                    group = rng.choice(groups)
                    present = list(fake.groups[group]["members"])
                    if present:
                        fake.remove_member(group, rng.choice(present))
                changes += 1
            conn.send(changes)
        elif command == "latency":
            fake.latency = argument
            conn.send(True)
        elif command == "stats":
            conn.send((len(fake.graph_requests()), fake.token_requests))
        elif command == "stop":
            fake.stop()
            conn.send(True)
            return


def bare_round(session: requests.Session, token: str, url: str) -> tuple[int, int, str]:
    """Follow one delta round with nothing but requests and json: (objects, requests, deltaLink)."""
    objects = pages = 0
    headers = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=999"}
    while True:
        body = session.get(url, headers=headers, timeout=60).json()
        pages += 1
        objects += len(body["value"])
        if "@odata.deltaLink" in body:
            return objects, pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def timed(label: str, action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - start
    print(f"  {label:<44} {elapsed:8.2f} s", flush=True)
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds added to every Graph request")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=serve, args=(theirs, directory), daemon=True)
        process.start()
        url, ca_file, tenant_id, client_id, client_secret = ours.recv()
        secret = Path(directory) / "secret"
        secret.write_text(client_secret, encoding="utf-8")
        ours.send(("load", (args.users, args.groups)))
        memberships = ours.recv()
        ours.send(("latency", args.latency))
        ours.recv()
        print(
            f"tenant: {args.users:,} users, {args.groups:,} groups, {memberships:,} memberships; "
            f"{args.latency * 1000:.0f} ms per Graph request; pages of <= 999 objects / 1,000 member refs"
        )

        settings = Settings(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret_file=str(secret),
            ca_file=ca_file,
            authority_host=url,
            graph_url=url,
        )
        connector = Connector("bench", settings)
        token = connector.tokens.token()
        select_users = ",".join(settings.user_attributes())
        select_groups = ",".join(settings.group_attributes())
        bare = requests.Session()
        bare.trust_env = False
        bare.verify = ca_file

        print("full sync")
        baseline_full, (users_link, groups_link, baseline_requests) = timed(
            "baseline: bare paging (requests + json)",
            lambda: _bare_full(bare, token, url, select_users, select_groups),
        )
        ours.send(("stats", None))
        before, tokens_before = ours.recv()
        full_time, snapshot = timed("connector.read(None) -> Snapshot", lambda: connector.read(None))
        ours.send(("stats", None))
        after, tokens_after = ours.recv()
        assert isinstance(snapshot, Snapshot) and snapshot.complete
        members = sum(len(g.member_keys or ()) for g in snapshot.groups)
        print(
            f"  read {len(snapshot.users):,} users, {len(snapshot.groups):,} groups, {members:,} memberships; "
            f"{connector.requests} Graph requests (fake counted {after - before}), "
            f"{tokens_after - tokens_before} token requests (msal cache); baseline {baseline_requests} requests"
        )

        ours.send(("change", args.changes))
        changed = ours.recv()
        print(f"incremental round ({changed:,} changes in the directory)")
        baseline_delta, baseline_delta_requests = timed(
            "baseline: bare paging of the deltaLinks",
            lambda: bare_round(bare, token, users_link)[1] + bare_round(bare, token, groups_link)[1],
        )
        delta_time, delta = timed("connector.read(cursor) -> Delta", lambda: connector.read(snapshot.cursor))
        assert isinstance(delta, Delta)
        print(
            f"  {len(delta.users):,} user upserts, {len(delta.removed_user_keys):,} user removals, "
            f"{len(delta.groups):,} group upserts, {sum(map(len, delta.members_added.values())):,} member adds, "
            f"{sum(map(len, delta.members_removed.values())):,} member removals; "
            f"{connector.requests} Graph requests; baseline {baseline_delta_requests} requests"
        )
        print(
            f"ratios vs baseline: full {full_time / baseline_full:.2f}x, incremental {delta_time / baseline_delta:.2f}x"
        )
        ours.send(("stop", None))
        ours.recv()
        process.join(timeout=10)


def _bare_full(
    session: requests.Session, token: str, url: str, select_users: str, select_groups: str
) -> tuple[str, str, int]:
    _, user_pages, users_link = bare_round(session, token, f"{url}/v1.0/users/delta?$select={select_users}")
    _, group_pages, groups_link = bare_round(session, token, f"{url}/v1.0/groups/delta?$select={select_groups}")
    return users_link, groups_link, user_pages + group_pages


if __name__ == "__main__":
    main()
