"""LDAP full and incremental read benchmark against a local slapd (issue 7).

Loads 100,000 users and 2,000 groups (50 members each) into a slapd in a temporary directory with ``slapadd -q``,
then measures, each in its own process so peak RSS (VmHWM) is that read's alone, interleaved and repeated (best of ``--repeat``):

- the connector's full read (``Connector.read(None)``: users, groups, DN → key resolution), at two page sizes,
  to show that memory does not grow with the number of pages;
- the Python floor: ldap3's bare ``paged_search`` generator over the same entries and attributes;
- the C floor: ``ldapsearch`` paging the same entries (``-E pr=N/noprompt``);
- an incremental read (syncrepl refreshOnly) after 1,000 changes: modifies, adds, deletes, membership changes.

Run: ``python benchmarks/bench_ldap.py [--users 100000 --groups 2000]``. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ldap.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, Slapd, peak_rss_kib  # noqa: E402

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
MEMBERS_PER_GROUP = 50


def write_ldif(path: Path, users: int, groups: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n")
        out.write(f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
        out.write(f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n")
        for n in range(users):
            manager = f"manager: uid=user{n // 10:06d},{PEOPLE}\n" if n >= 10 else ""
            out.write(
                f"dn: uid=user{n:06d},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: user{n:06d}\n"
                f"cn: User {n:06d}\ngivenName: User\nsn: Number{n:06d}\ndisplayName: User Number {n:06d}\n"
                f"mail: user{n:06d}@example.org\ndepartmentNumber: D{n % 40:02d}\ntitle: Engineer\n"
                f"employeeNumber: {n}\n{manager}userPassword: not-used\n\n"
            )
        for g in range(groups):
            out.write(f"dn: cn=group{g:05d},{GROUPS}\nobjectClass: groupOfNames\ncn: group{g:05d}\n")
            for m in range(MEMBERS_PER_GROUP):
                out.write(f"member: uid=user{(g * MEMBERS_PER_GROUP + m) % users:06d},{PEOPLE}\n")
            out.write("\n")


def settings(url: str, password_file: str, page_size: int):  # type: ignore[no-untyped-def]
    from connectors.ldap import Settings

    return Settings(
        url=url,
        bind_dn=ROOT_DN,
        bind_password_file=password_file,
        users_base=PEOPLE,
        groups_base=GROUPS,
        page_size=page_size,
        timeout=600.0,
    )


def child(mode: str, url: str, password_file: str, page_size: int, cursor_file: str) -> None:
    """One measured read in this process (imports done before the clock starts); prints a JSON line."""
    import ldap3

    from connectors.ldap import Connector
    from connectors.ldap.mapping import EntryMapping
    from connectors.ldap.vendor import openldap

    started = time.perf_counter()
    cpu_started = time.process_time()
    result: dict[str, object] = {"mode": mode, "page_size": page_size}
    if mode == "connector":
        snapshot = Connector("bench", settings(url, password_file, page_size)).read(None)
        result["entries"] = len(snapshot.users) + len(snapshot.groups)  # type: ignore[union-attr]
        result["complete"] = snapshot.complete  # type: ignore[union-attr]
        Path(cursor_file).write_text(snapshot.cursor or "", encoding="utf-8")
    elif mode == "incremental":
        delta = Connector("bench", settings(url, password_file, page_size)).read(Path(cursor_file).read_text())
        result["kind"] = type(delta).__name__
        result["entries"] = len(delta.users) + len(delta.groups)
        result["removed"] = len(getattr(delta, "removed_user_keys", []))
    elif mode == "ldap3":
        mapping = EntryMapping(openldap.FLAVOR, settings(url, password_file, page_size))
        server = ldap3.Server(url, get_info=ldap3.NONE)
        connection = ldap3.Connection(server, ROOT_DN, Path(password_file).read_text().strip(), auto_bind=True)
        count = 0
        for base, search_filter, attributes in (
            (PEOPLE, openldap.FLAVOR.users_filter, mapping.user_attributes),
            (GROUPS, openldap.FLAVOR.groups_filter, mapping.group_attributes),
        ):
            for _ in connection.extend.standard.paged_search(
                base, search_filter, attributes=attributes, paged_size=page_size, generator=True
            ):
                count += 1
        result["entries"] = count
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 3)
    result["peak_rss_mib"] = round(peak_rss_kib() / 1024, 1)
    print(json.dumps(result))


def measure(mode: str, url: str, password_file: Path, page_size: int, cursor_file: Path) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, str(password_file), str(page_size), str(cursor_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def ldapsearch(url: str, password_file: Path, page_size: int, attributes: list[str], group_attributes: list[str]):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    lines = 0
    for base, search_filter, attrs in (
        (PEOPLE, "(objectClass=inetOrgPerson)", attributes),
        (
            GROUPS,
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
            group_attributes,
        ),
    ):
        output = subprocess.run(
            [
                "ldapsearch",
                "-x",
                "-LLL",
                "-H",
                url,
                "-D",
                ROOT_DN,
                "-y",
                str(password_file),
                "-b",
                base,
                "-E",
                f"pr={page_size}/noprompt",
                search_filter,
                *attrs,
            ],
            check=True,
            capture_output=True,
        )
        lines += output.stdout.count(b"\ndn: ") + 1
    return {
        "mode": "ldapsearch",
        "page_size": page_size,
        "entries": lines,
        "seconds": round(time.perf_counter() - started, 3),
    }


def change(url: str, users: int, count: int) -> dict[str, int]:
    """Apply ``count`` changes: 70% modifies, 10% adds, 10% deletes, 10% group membership changes."""
    import ldap3

    connection = ldap3.Connection(url, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)
    modifies, adds, deletes = count * 7 // 10, count // 10, count // 10
    memberships = count - modifies - adds - deletes
    for n in range(modifies):
        connection.modify(f"uid=user{n:06d},{PEOPLE}", {"title": [(ldap3.MODIFY_REPLACE, ["Senior Engineer"])]})
    for n in range(adds):
        uid = f"new{n:06d}"
        connection.add(f"uid={uid},{PEOPLE}", ["inetOrgPerson"], {"uid": uid, "cn": uid, "sn": uid})
    for n in range(deletes):
        connection.delete(f"uid=user{users - 1 - n:06d},{PEOPLE}")
    for g in range(memberships):
        connection.modify(
            f"cn=group{g:05d},{GROUPS}", {"member": [(ldap3.MODIFY_ADD, [f"uid=new{g % max(adds, 1):06d},{PEOPLE}"])]}
        )
    connection.unbind()
    return {"modifies": modifies, "adds": adds, "deletes": deletes, "memberships": memberships}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="full reads per method; the best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="syncd-bench-ldap-") as folder:
        root = Path(folder)
        slapd = Slapd(root / "slapd", sessionlog=max(2 * args.changes, 1000))
        ldif = root / "load.ldif"
        started = time.perf_counter()
        write_ldif(ldif, args.users, args.groups)
        slapd.load(ldif)
        print(
            f"loaded {args.users} users and {args.groups} groups with slapadd -q in {time.perf_counter() - started:.1f} s"
        )
        password_file = root / "password"
        password_file.write_text(ROOT_PASSWORD, encoding="utf-8")
        cursor_file = root / "cursor"
        slapd.start()
        try:
            from connectors.ldap.mapping import EntryMapping
            from connectors.ldap.vendor import openldap

            mapping = EntryMapping(openldap.FLAVOR, settings(slapd.url, str(password_file), 1000))
            runs: dict[str, list[dict[str, object]]] = {"ldapsearch": [], "ldap3": [], "connector": [], "small": []}
            for _ in range(args.repeat):  # interleaved, best of N: the machine is shared, noise only adds time
                runs["ldapsearch"].append(
                    ldapsearch(slapd.url, password_file, 1000, mapping.user_attributes, mapping.group_attributes)
                )
                runs["ldap3"].append(measure("ldap3", slapd.url, password_file, 1000, cursor_file))
                runs["small"].append(measure("connector", slapd.url, password_file, 200, cursor_file))
                runs["connector"].append(measure("connector", slapd.url, password_file, 1000, cursor_file))
            c_floor, bare, connector, small_pages = (
                min(runs[name], key=lambda row: row["seconds"])
                for name in ("ldapsearch", "ldap3", "connector", "small")
            )
            changes = change(slapd.url, args.users, args.changes)
            delta = measure("incremental", slapd.url, password_file, 1000, cursor_file)
        finally:
            slapd.stop()

    entries = args.users + args.groups
    print(f"full read of {entries} entries (users and groups, mapped attributes only), best of {args.repeat}:")
    for name, rows in runs.items():
        print(f"  all {name} runs (s): {', '.join(str(row['seconds']) for row in rows)}")
    for row in (c_floor, bare, connector, small_pages):
        rss = f"{row['peak_rss_mib']:>7} MiB peak RSS" if "peak_rss_mib" in row else "        (C, not measured)"
        cpu = f"{row['cpu_seconds']:>7.2f} s CPU" if "cpu_seconds" in row else "  (child process)"
        print(
            f"  {row['mode']:<11} page {row['page_size']:>5}: {row['seconds']:>7.2f} s wall {cpu}  {rss}  "
            f"entries {row['entries']}"
        )
    best_cpu = {name: min(float(row["cpu_seconds"]) for row in runs[name]) for name in ("ldap3", "connector")}
    print(f"  connector / bare ldap3, wall: {float(connector['seconds']) / float(bare['seconds']):.2f}x (aim <= 1.3x)")
    print(
        f"  connector / bare ldap3, CPU:  {best_cpu['connector'] / best_cpu['ldap3']:.2f}x (less exposed to a busy machine)"
    )
    print(f"  connector / ldapsearch, wall: {float(connector['seconds']) / float(c_floor['seconds']):.1f}x")
    print(f"  machine load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"  connector peak RSS at page 200 ({entries // 200} pages) vs page 1000 ({entries // 1000} pages): "
        f"{small_pages['peak_rss_mib']} vs {connector['peak_rss_mib']} MiB"
    )
    print(
        f"incremental read after {args.changes} changes {changes}: {delta['seconds']:.2f} s wall, "
        f"{delta['cpu_seconds']:.2f} s CPU, {delta['kind']} with "
        f"{delta['entries']} upserts and {delta['removed']} removals, peak RSS {delta['peak_rss_mib']} MiB (aim < 2 s)"
    )


if __name__ == "__main__":
    main()
