"""Active Directory read benchmark against a local Samba AD DC (issue 15).

Provisions a domain in a temporary directory (tests/ad/samba.py), loads ``--users`` people and ``--teams`` groups
of 50 members (plus the test layout's 25 nested and large groups) offline with ``ldbadd``, starts Samba, then
measures over LDAPS, each best of ``--repeat``:

- the connector's full read as a plain domain user (``Connector.read(None)``: users, groups, DN → key resolution);
- the Python floor: ldap3's bare paged search over the same entries and attributes;
- the C floor: ``ldapsearch`` paging the same entries (``-E pr=1000/noprompt``);
- a DirSync increment after ``--changes`` changes (renames, disables, member moves, deletes, moves out of scope),
  read by the account holding "Replicating Directory Changes": time and LDAP requests (DirSync rounds, re-reads of
  changed entries, DN lookups, the objectGUID census Samba makes necessary since it hides tombstones from it).

Samba needs ports 389/636: run it while no AD test session runs. Run:
``python benchmarks/bench_ad.py [--users 20000 --teams 400]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ldap3  # noqa: E402

from connectors.ldap import Connector, Settings  # noqa: E402
from tests.ad.samba import (  # noqa: E402
    GROUPS,
    LEAVERS,
    READER,
    REPLICATOR,
    SERVICE_PASSWORD,
    STAFF,
    SambaDC,
    group_dn,
    user_dn,
)

USER_ATTRIBUTES = [
    "objectGUID",
    "sAMAccountName",
    "mail",
    "displayName",
    "givenName",
    "sn",
    "department",
    "title",
    "employeeID",
    "employeeNumber",
    "userAccountControl",
    "manager",
]
GROUP_ATTRIBUTES = ["objectGUID", "cn", "member"]
USERS_FILTER = "(&(objectCategory=person)(objectClass=user))"


def settings(dc: SambaDC, account: str) -> Settings:
    return Settings(
        url=dc.ldaps_url,
        users_base=STAFF,
        groups_base=GROUPS,
        bind_dn=account,
        bind_password_file=str(dc.reader_password_file),
        ca_file=str(dc.ca),
        page_size=1000,
        timeout=600,
    )


class Counted:
    """Counts LDAP search requests made through ldap3 in this process."""

    def __init__(self) -> None:
        self.count = 0
        self._search = ldap3.Connection.search

    def __enter__(self) -> Counted:
        original = self._search

        def search(connection, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return original(connection, *args, **kwargs)

        ldap3.Connection.search = search  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        ldap3.Connection.search = self._search  # type: ignore[method-assign]


def connector_read(dc: SambaDC) -> tuple[float, int, int]:
    started = time.perf_counter()
    snapshot = Connector("bench-ad", settings(dc, READER)).read(None)
    return time.perf_counter() - started, len(snapshot.users), len(snapshot.groups)


def bare_ldap3(dc: SambaDC) -> tuple[float, int]:
    import ssl

    started = time.perf_counter()
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca))
    connection = ldap3.Connection(
        ldap3.Server(dc.ldaps_url, tls=tls, get_info=ldap3.NONE), READER, SERVICE_PASSWORD, auto_bind=True
    )
    count = 0
    for base, search_filter, attributes in (
        (STAFF, USERS_FILTER, USER_ATTRIBUTES),
        (GROUPS, "(objectClass=group)", GROUP_ATTRIBUTES),
    ):
        for _ in connection.extend.standard.paged_search(
            base, search_filter, attributes=attributes, paged_size=1000, generator=True
        ):
            count += 1
    connection.unbind()
    return time.perf_counter() - started, count


def ldapsearch(dc: SambaDC) -> tuple[float, int]:
    environment = dict(os.environ, LDAPTLS_CACERT=str(dc.ca))
    started = time.perf_counter()
    entries = 0
    for base, search_filter, attributes in (
        (STAFF, USERS_FILTER, USER_ATTRIBUTES),
        (GROUPS, "(objectClass=group)", GROUP_ATTRIBUTES),
    ):
        done = subprocess.run(
            [
                *("ldapsearch", "-LLL", "-x", "-H", dc.ldaps_url, "-D", READER, "-w", SERVICE_PASSWORD, "-b", base),
                *("-E", "pr=1000/noprompt", search_filter, *attributes),
            ],
            capture_output=True,
            check=True,
            env=environment,
        )
        entries += done.stdout.count(b"\ndn: ") + done.stdout.startswith(b"dn: ")
    return time.perf_counter() - started, entries


def change(dc: SambaDC, users: int, count: int) -> dict[str, int]:
    """``count`` changes: 50% renames, 20% disables, 20% member moves, 5% deletes, 5% moves out of scope."""
    admin = dc.admin()
    shares = {"renamed": count // 2, "disabled": count // 5, "member moves": count // 5, "deleted": count // 20}
    shares["moved out"] = count - sum(shares.values())
    numbers = iter(range(100, users, max(1, (users - 100) // count)))
    for _ in range(shares["renamed"]):
        n = next(numbers)
        admin.modify(user_dn(n), {"displayName": [(ldap3.MODIFY_REPLACE, [f"Renamed {n:05d}"])]})
    for _ in range(shares["disabled"]):
        admin.modify(user_dn(next(numbers)), {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})
    for _ in range(shares["member moves"]):
        n = next(numbers)
        old, new = f"Dept {n % 20:02d}", f"Dept {(n + 1) % 20:02d}"
        admin.modify(group_dn(old), {"member": [(ldap3.MODIFY_DELETE, [user_dn(n)])]})
        admin.modify(group_dn(new), {"member": [(ldap3.MODIFY_ADD, [user_dn(n)])]})
    for _ in range(shares["deleted"]):
        admin.delete(user_dn(next(numbers)))
    for _ in range(shares["moved out"]):
        n = next(numbers)
        admin.modify_dn(user_dn(n), f"CN=User {n:05d}", new_superior=LEAVERS)
    admin.unbind()
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--teams", type=int, default=400)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dc = SambaDC(Path(tempfile.mkdtemp(prefix="syncd-bench-ad-")), args.users, args.teams)
    try:
        started = time.perf_counter()
        dc.provision()
        dc.start()
        groups = len(dc.plan.groups)
        print(f"loaded {args.users} users, {groups} groups in {time.perf_counter() - started:.1f} s (provision+ldbadd)")
        best = {"connector": 1e9, "ldap3": 1e9, "ldapsearch": 1e9}
        for _ in range(args.repeat):
            seconds, users_read, groups_read = connector_read(dc)
            best["connector"] = min(best["connector"], seconds)
            seconds, entries = bare_ldap3(dc)
            best["ldap3"] = min(best["ldap3"], seconds)
            seconds, printed = ldapsearch(dc)
            best["ldapsearch"] = min(best["ldapsearch"], seconds)
        print(f"full read, connector  : {best['connector']:.2f} s ({users_read} users, {groups_read} groups)")
        print(f"full read, bare ldap3 : {best['ldap3']:.2f} s ({entries} entries)")
        print(f"full read, ldapsearch : {best['ldapsearch']:.2f} s ({printed} entries)")
        print(
            f"connector / ldap3 = {best['connector'] / best['ldap3']:.2f}, ldap3 / ldapsearch = "
            f"{best['ldap3'] / best['ldapsearch']:.2f}"
        )
        connector = Connector("bench-ad", settings(dc, REPLICATOR))
        cursor = connector.read(None).cursor
        shares = change(dc, args.users, args.changes)
        with Counted() as counted:
            started = time.perf_counter()
            delta = connector.read(cursor)
            seconds = time.perf_counter() - started
        removed = len(getattr(delta, "removed_user_keys", []))
        census = getattr(delta, "present_user_keys", None)
        print(f"changes: {shares}")
        print(
            f"DirSync increment: {seconds:.2f} s, {counted.count} LDAP requests; {len(delta.users)} users re-read, "
            f"{removed} removed by DN, census of {len(census) if census is not None else 0} keys, "
            f"{sum(len(v) for v in delta.members_added.values())} member adds, "
            f"{sum(len(v) for v in delta.members_removed.values())} member removals"
        )
    finally:
        dc.remove()


if __name__ == "__main__":
    main()
