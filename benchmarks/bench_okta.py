"""Benchmark: a full Okta read of 100,000 users and 2,000 groups, in requests used against the API's minimum.

The fake org runs in its own process (so its JSON work does not share our interpreter lock) and answers every
request after a fixed latency (default 100 ms, about what Okta's list endpoints take for a full page). Its
rate-limit buckets are set high (100,000 a minute): with Okta's default 600 a minute for ``/api/v1/users`` and a
50 % share, the 500 user pages alone would take 100 s by rule, which measures the org's contract, not the
connector.

The directory: 100,000 users (95 % ACTIVE, the rest spread over the other seven statuses), one BUILT_IN
"Everyone" group with all of them, and 1,999 OKTA_GROUPs with every user in three of them at random (seeded).

The minimum number of requests the API allows for that data:
  users pages at the maximum limit 200 + group pages at the maximum limit 10,000 + for every group
  ceil(members / 1,000) member pages (at least one, an empty group costs one request too).
The time floor: the user list can only be walked one next link after another, so no client finishes before
``user pages × latency``.

Run: ``python benchmarks/bench_okta.py [--users N] [--groups N] [--latency S] [--concurrency N]``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.interface import Snapshot
from connectors.okta import Connector, Settings
from connectors.okta.settings import GROUPS_PAGE_MAX, MEMBERS_PAGE_MAX, USERS_PAGE_MAX
from tests.fakes.okta import FakeOkta

OTHER_STATUSES = ("PROVISIONED", "STAGED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT", "SUSPENDED", "DEPROVISIONED")


def serve(users: int, groups: int, latency: float, pipe: Connection) -> None:
    """Child process: build the directory, serve it, report its size and request counts when asked."""
    chance = random.Random(20261125)
    fake = FakeOkta(latency=0.0, rate_limits={p: 100_000 for p in ("/api/v1/users", "/api/v1/groups")})
    ids = []
    for i in range(users):
        status = "ACTIVE" if chance.random() < 0.95 else chance.choice(OTHER_STATUSES)
        ids.append(
            fake.add_user(f"user{i:06d}.person@acme.com", status=status, department=f"Dept {i % 40}", title="Staff")
        )
    group_ids = [fake.add_group("Everyone", type="BUILT_IN")]
    group_ids += [fake.add_group(f"Team {i:04d}") for i in range(groups - 1)]
    fake.add_members(group_ids[0], ids, log=False)
    memberships: dict[str, list[str]] = {gid: [] for gid in group_ids[1:]}
    for uid in ids:
        for gid in chance.sample(group_ids[1:], 3):
            memberships[gid].append(uid)
    for gid, members in memberships.items():
        fake.add_members(gid, members, log=False)
    sizes = [len(fake._store.members[gid]) for gid in group_ids]
    fake.latency = latency
    fake.start()
    pipe.send((fake.url, fake.api_token, sizes))
    pipe.recv()  # the read is over
    pipe.send(
        {"users": fake.count("/api/v1/users"), "all": len(fake.seen), "429": sum(s.status == 429 for s in fake.seen)}
    )
    fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake waits before each answer")
    parser.add_argument("--concurrency", type=int, default=8, help="max_concurrency of the connector")
    args = parser.parse_args()

    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=serve, args=(args.users, args.groups, args.latency, theirs), daemon=True)
    built = time.perf_counter()
    child.start()
    url, token, sizes = ours.recv()
    print(
        f"fake org: {args.users:,} users, {args.groups:,} groups, {sum(sizes):,} memberships "
        f"(built in {time.perf_counter() - built:.1f} s); latency {args.latency * 1000:.0f} ms per request"
    )

    os.environ["BENCH_OKTA_TOKEN"] = token
    settings = Settings(url=url, token_env="BENCH_OKTA_TOKEN", max_concurrency=args.concurrency)
    connector = Connector("bench", settings)
    started = time.perf_counter()
    snapshot = connector.read(None)
    elapsed = time.perf_counter() - started
    ours.send("done")
    served = ours.recv()
    child.join(timeout=30)

    assert isinstance(snapshot, Snapshot) and snapshot.complete
    assert len(snapshot.users) == args.users and len(snapshot.groups) == args.groups
    assert sum(len(g.member_keys or ()) for g in snapshot.groups) == sum(sizes)

    user_pages = math.ceil(args.users / USERS_PAGE_MAX)
    group_pages = math.ceil(args.groups / GROUPS_PAGE_MAX)
    member_pages = sum(max(1, math.ceil(size / MEMBERS_PAGE_MAX)) for size in sizes)
    minimum = user_pages + group_pages + member_pages
    floor = user_pages * args.latency
    print(
        f"full read: {elapsed:.1f} s with max_concurrency {args.concurrency} "
        f"(floor {floor:.1f} s = {user_pages} sequential user pages x latency; ratio {elapsed / floor:.2f})"
    )
    print(
        f"requests: {connector.requests_sent:,} sent by the connector, {served['all']:,} served "
        f"({served['429']} throttled)"
    )
    print(
        f"minimum:  {minimum:,} = {user_pages} user pages + {group_pages} group page(s) + {member_pages:,} member pages"
    )
    print(
        f"overhead: {connector.requests_sent - minimum:+,} requests ({(connector.requests_sent / minimum - 1) * 100:+.2f} %)"
    )


if __name__ == "__main__":
    main()
