"""``syncd audit``: read, export, verify and prune an org's tamper-evident ledger.

``export`` streams (constant memory at any ledger size); CSV cells that a spreadsheet would run as a formula are
defused as OWASP's CSV Injection page and ASVS 1.2.10 describe; ``verify`` exits 1 naming the first bad sequence
number; ``prune`` deletes old entries behind a checkpoint so the chain still verifies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from syncd.admin import audit
from syncd.admin.history import parse_moment
from syncd.cli.errors import CliError
from syncd.cli.output import Progress, add_format, plural, print_json
from syncd.cli.runtime import start_runtime
from syncd.clock import iso
from syncd.sync import ledger, orgs

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TIME_HELP = "ISO 8601 date or time, UTC unless an offset is given (2026-11-01, 2026-11-01T09:30:00Z)"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "audit",
        help="the audit ledger",
        description="Read, export, verify and prune an org's hash-chained ledger of every change.",
    )
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser(
        "list",
        help="list ledger entries",
        description="List an org's ledger entries, oldest first. Filters ending in * match a prefix "
        "(--action 'member.*').",
    )
    _add_org(listing)
    _add_range(listing)
    listing.add_argument("--actor", help="e.g. source:hr, token:12, admin:cli, 'source:*'")
    listing.add_argument("--action", help="e.g. member.role, 'team.*'")
    listing.add_argument("--target", help="e.g. member:alice@acme.com, 'team:*'")
    listing.add_argument("--last", type=_positive, metavar="N", help="only the newest N matching entries")
    add_format(listing)
    listing.set_defaults(handler=run_list)

    export = sub.add_parser(
        "export",
        help="export ledger entries",
        description="Stream an org's ledger entries with every field (seq, at, actor, action, target, before, "
        "after, reason, prev_hash, hash). jsonl and json keep the exact values; csv is for spreadsheets and "
        "prefixes cells starting with = + - @ TAB CR with a single quote.",
    )
    _add_org(export)
    _add_range(export)
    export.add_argument("--format", choices=("csv", "json", "jsonl"), default="jsonl", help="default: jsonl")
    export.add_argument(
        "--output", metavar="FILE", help="write to FILE (complete or not at all) instead of standard output"
    )
    export.set_defaults(handler=run_export)

    check = sub.add_parser(
        "verify",
        help="verify the hash chain",
        description="Recompute the org's hash chain, or that of an unfiltered export (--file, json or jsonl). "
        "Exit 0 with the entry count and head when intact; exit 1 naming the first bad sequence number for any "
        "edited, deleted, inserted or reordered entry.",
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--org", help="org slug")
    source.add_argument("--file", metavar="EXPORT", help="an 'audit export --format jsonl|json' file, checked offline")
    check.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="a head recorded earlier (printed by a previous verify); detects removal of the newest entries",
    )
    add_format(check)
    check.set_defaults(handler=run_verify)

    prune = sub.add_parser(
        "prune",
        help="delete old entries behind a checkpoint",
        description="Retention: delete the entries older than --before behind a ledger.checkpoint entry that "
        "names the last one deleted, so the remaining chain still verifies. Refuses a chain that does not verify.",
    )
    _add_org(prune)
    prune.add_argument("--before", required=True, metavar="TIME", help=f"delete entries older than this; {_TIME_HELP}")
    add_format(prune)
    prune.set_defaults(handler=run_prune)


def _add_org(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", required=True, help="org slug")


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="TIME", help=f"entries at or after; {_TIME_HELP}")
    parser.add_argument(
        "--until", metavar="TIME", help=f"entries before this time (a bare date includes that whole day); {_TIME_HELP}"
    )


def _entries(args: argparse.Namespace, org_id: int, last: int | None = None) -> Iterator[ledger.StoredEntry]:
    since = parse_moment(args.since, "--since") if args.since else None
    until = parse_moment(args.until, "--until", end_of_day=True) if args.until else None
    return audit.entries(
        org_id,
        since=since,
        until=until,
        actor=getattr(args, "actor", None),
        action=getattr(args, "action", None),
        target=getattr(args, "target", None),
        last=last,
    )


def run_list(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    entries = _entries(args, org.id, args.last)
    if args.format == "json":
        _write_json_array(sys.stdout, entries)
        return 0
    out = sys.stdout
    out.write(f"{'SEQ':>7}  {'AT':<27}  {'ACTOR':<20}  {'ACTION':<18}  {'TARGET':<32}  REASON\n")
    for entry in entries:
        actor, action, target, reason = (printable(v) for v in (entry.actor, entry.action, entry.target, entry.reason))
        out.write(
            f"{entry.seq:>7}  {iso(entry.at):<27}  {actor:<20}  {action:<18}  {target:<32}  {reason}".rstrip() + "\n"
        )
    return 0


def printable(text: str) -> str:
    """Text safe to show on a terminal: control characters (newlines, escape sequences a SCIM client could have
    put in a userName) are shown escaped, so one entry stays one line and cannot rewrite the screen."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def run_export(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    progress = Progress(f"audit export {org.slug}")
    entries = _counted(_entries(args, org.id), progress)
    with _destination(args.output) as out:
        if args.format == "jsonl":
            for entry in entries:
                out.write(json.dumps(ledger.entry_document(entry), ensure_ascii=False) + "\n")
        elif args.format == "json":
            _write_json_array(out, entries)
        else:
            writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            writer.writerow(audit.EXPORT_FIELDS)
            for entry in entries:
                writer.writerow([defuse_formula(_csv_cell(value)) for value in entry])
    progress.finish()
    if args.output:
        # On stderr with the progress: standard output stays for data, empty when the data went to a file.
        print(
            f"audit export: {plural(progress.done, 'entry')} of org {org.slug} written to {args.output}",
            file=sys.stderr,
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    expect = _parse_head(args.expect_head) if args.expect_head else None
    if args.file:
        subject = f"export {args.file}"
        result = audit.verify_export(args.file, expect)
    else:
        start_runtime(args)
        org = orgs.get(args.org)
        subject = f"ledger of org {org.slug}"
        progress = Progress(f"audit verify {org.slug}")
        entries = _counted(audit.entries(org.id), progress)
        result = ledger.verify_entries(entries, ledger.checkpoints(org.id), expect)
        progress.finish()
    if args.format == "json":
        print_json(
            {
                "org": args.org,
                "file": args.file,
                "ok": result.ok,
                "checked": result.checked,
                "first_seq": result.first_seq,
                "head_seq": result.last_seq,
                "head_hash": result.head_hash,
                "bad_seq": result.bad_seq,
                "problem": result.problem or None,
            }
        )
    if not result.ok:
        print(f"syncd: error: {subject}: seq {result.bad_seq}: {result.problem}", file=sys.stderr)
        return 1
    if args.format != "json":
        span = f"seq {result.first_seq}..{result.last_seq}" if result.checked else "empty"
        head = f"; head {result.last_seq}:{result.head_hash}" if result.checked else ""
        print(f"{subject} intact: {result.checked} entries ({span}){head}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    start_runtime(args)
    org = orgs.get(args.org)
    before = parse_moment(args.before, "--before")
    result = ledger.prune(org.id, before)
    if args.format == "json":
        print_json(
            {
                "org": org.slug,
                "before": iso(before),
                "pruned": result.pruned,
                "through_seq": result.through_seq,
                "checkpoint_seq": result.checkpoint_seq,
            }
        )
    elif not result.pruned:
        print(f"ledger of org {org.slug}: no entries before {iso(before)}; nothing pruned")
    else:
        print(
            f"ledger of org {org.slug}: pruned {result.pruned} entries (through seq {result.through_seq}) "
            f"behind checkpoint seq {result.checkpoint_seq}"
        )
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def defuse_formula(cell: str) -> str:
    """Prefix a single quote to a cell a spreadsheet would evaluate (OWASP CSV Injection; ASVS 1.2.10)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return iso(value)
    return str(value)


def _parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise CliError(f"--expect-head: expected SEQ:HASH as printed by 'syncd audit verify', got {text!r}")
    return int(seq), digest.lower()


def _counted(entries: Iterator[ledger.StoredEntry], progress: Progress) -> Iterator[ledger.StoredEntry]:
    for entry in entries:
        progress.advance()
        yield entry


def _write_json_array(out: TextIO, entries: Iterator[ledger.StoredEntry]) -> None:
    """A JSON array written one element at a time, so memory stays flat however long the ledger is."""
    out.write("[")
    separator = "\n"
    for entry in entries:
        out.write(separator + json.dumps(ledger.entry_document(entry), ensure_ascii=False))
        separator = ",\n"
    out.write("\n]\n")


@contextmanager
def _destination(path: str | None) -> Iterator[TextIO]:
    """Standard output, or a file that appears only once complete (a temp file renamed into place)."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as error:
        raise CliError(f"--output {path}: cannot write there ({error.strerror}); check the folder exists") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
