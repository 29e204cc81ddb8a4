"""The file source: an HR export or bulk-invite list as CSV (RFC 4180) or JSON (RFC 8259), read whole every time.

A file has no change feed, so every :meth:`Connector.read` returns a full :class:`Snapshot`; its cursor is the
SHA-256 of the file's bytes and the number of people it held (``sha256:<hex>;records=<n>``). Staging a snapshot is
idempotent, so an unchanged file re-read changes nothing downstream.

CSV headers are matched case- and punctuation-insensitively (``First Name``, ``first_name`` and ``FIRSTNAME`` are
one header) against these aliases:

===============  ==========================================================================================
field            header aliases
===============  ==========================================================================================
email            email, e-mail, mail, email address, work email, primary email, business email
user_name        user name, username, login, login name, user principal name, upn, samaccountname, uid
display_name     name, display name, full name, employee name, preferred name
given_name       given name, first name, forename, first
family_name      family name, last name, surname, sn, last
employee_number  employee id, employee number, employee no, emp id, emp no, worker id, staff id,
                 personnel number
external_id      external id, externalid, immutable id, source id
role             role, org role, user role, access role
groups           groups, group, group names, member of   (several groups separated by ``;`` or ``|``)
department       department, dept, department name
title            title, job title, position
manager          manager, manager email, manager id, manager employee id, manager number, reports to,
                 supervisor, supervisor email
active           active, status, enabled, is active, account status, employment status
===============  ==========================================================================================

Any other column is kept in ``attributes`` under its header as written, so a rule can match it
(``attribute = {location = "Berlin"}``); ``role`` goes to ``attributes["role"]`` for the same reason. A source's
``columns`` setting maps a field to a header by name when an export's headers fit no alias or fit one twice, and
``""`` turns a field off (``columns = {active = ""}`` when a "Status" column holds "Full time", not activity).

``active`` accepts true/false, yes/no, y/n, 1/0, active/inactive, enabled/disabled, and terminated, suspended,
deactivated, left, leaver, former as inactive; empty and "on leave" mean active (someone on leave keeps their
access: suspending them would start the clock towards deprovisioning). ``manager`` holds the manager's email,
user name or employee id and is resolved to the manager's record key; one not in the file is kept only in
``attributes["manager"]``.

**Key.** A record's key is its employee id when the row has one, else its lower-cased email, else its lower-cased
user name. HR systems never reuse or change an employee id, while people change names and therefore email
addresses: keying by employee id keeps one identity across a rename instead of a removal plus a new person.

**Groups.** Each distinct group named in ``groups`` becomes a :class:`GroupRecord` whose key and display name are
the group's name (first spelling seen; names compare case-insensitively), and each user lists those keys.

**JSON** is either a list of user objects with the same field names (aliases apply to keys; ``groups`` may be a
list) or ``{"users": [...], "groups": [{"name": ..., "members": [...], "external_id": ...}]}``, where a member is
a user's email, user name, employee id or key, or another group's name (a nested group).

**Broken rows.** A row without email and user name, with an unknown ``active`` value, a field count unlike the
header's, an unparsable quote, or a key seen before is left out and named in ``problems`` (``line 7: ...``; for
JSON ``line 12 (users[6]): ...``); the snapshot is then incomplete, so it updates who it saw and implies no absence
(invariant 1 in docs/architecture.md). An email, user name, employee id or external id holding a control character
(NUL, a line break, a zero-width or bidi mark: Unicode Cc/Cf) is such a broken row: it would otherwise be a new
person.

**Damaged files.** A file can look whole and not be: an export cut short, or read while being rewritten in place.
So the snapshot is also incomplete (named in ``problems``) when a CSV's last record has no line end (a writer
stopped mid-line, perhaps mid-field), when a quote is never closed, and when the file holds fewer than half the
people of the last complete read (the cursor's ``records``; from :data:`DROP_BASELINE` people up). ``syncd sync
NAME --full`` reads without that last comparison, to accept a real drop (the guard still holds a plan suspending
more than its thresholds). A file whose size or modification time changes during the read is read again once;
changed again, the read fails. Exporters should write to a temporary name and rename it into place (an atomic
replace), so that a read sees the old file or the new one, never half of each.

A file that is missing, unreadable, undecodable, changed while being read twice, not JSON, or without an email or
user name column raises :class:`ConnectorError`: nothing in it can be trusted.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from connectors.interface import ConfigError, ConnectorError, GroupRecord, Snapshot, UserRecord

FIELDS = (
    "email",
    "user_name",
    "display_name",
    "given_name",
    "family_name",
    "employee_number",
    "external_id",
    "role",
    "groups",
    "department",
    "title",
    "manager",
    "active",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "mail", "email address", "work email", "primary email", "business email"),
    "user_name": (
        "user name",
        "login",
        "login name",
        "user principal name",
        "upn",
        "samaccountname",
        "uid",
    ),
    "display_name": ("name", "display name", "full name", "employee name", "preferred name"),
    "given_name": ("given name", "first name", "forename", "first"),
    "family_name": ("family name", "last name", "surname", "sn", "last"),
    "employee_number": (
        "employee id",
        "employee number",
        "employee no",
        "emp id",
        "emp no",
        "worker id",
        "staff id",
        "personnel number",
    ),
    "external_id": ("external id", "immutable id", "source id"),
    "role": ("role", "org role", "user role", "access role"),
    "groups": ("groups", "group", "group names", "member of"),
    "department": ("department", "dept", "department name"),
    "title": ("title", "job title", "position"),
    "manager": (
        "manager",
        "manager email",
        "manager id",
        "manager employee id",
        "manager number",
        "reports to",
        "supervisor",
        "supervisor email",
    ),
    "active": ("active", "status", "enabled", "is active", "account status", "employment status"),
}

_ACTIVE = {"true", "yes", "y", "1", "active", "enabled", "employed", "current", "on leave", "leave of absence"}
_INACTIVE = {
    "false",
    "no",
    "n",
    "0",
    "inactive",
    "disabled",
    "terminated",
    "suspended",
    "deactivated",
    "left",
    "leaver",
    "former",
}
_GROUP_SEPARATOR = re.compile(r"[;|]")
# A drop is judged only from this many people up: a small file's size swings with every leaver, and the guard's
# thresholds already hold a plan that suspends a large share of a small org (approve is the way on from there).
DROP_BASELINE = 100
_IDENTIFIERS = ("email", "user_name", "employee_number", "external_id")
_DELIMITERS = (",", ";", "\t", "|")


def normalize_header(text: str) -> str:
    """``"First Name"``, ``"first_name"`` and ``"FIRST-NAME"`` all become ``"firstname"``."""
    return re.sub(r"[^0-9a-z]", "", text.casefold())


HEADER_ALIASES: dict[str, str] = {
    normalize_header(alias): name for name, aliases in _ALIASES.items() for alias in (name, *aliases)
}


@dataclass(frozen=True)
class Settings:
    """A ``[[sources]]`` table of kind ``file``.

    ``format`` defaults to the file's extension (``.csv``/``.tsv``/``.txt`` → csv, ``.json`` → json);
    ``delimiter`` defaults to whichever of ``, ; TAB |`` the header line uses most; ``encoding`` to UTF-8 (a byte
    order mark is tolerated). ``columns`` maps a field (see the module docstring) to a header name exactly, for
    exports whose headers match no alias or two; an empty name turns the field off.
    """

    path: str
    format: Literal["csv", "json"] | None = None
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    encoding: str = "utf-8"
    columns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(FIELDS))
        if unknown:
            raise ConfigError(f"columns.{unknown[0]}: unknown field (known: {', '.join(FIELDS)})")
        if self.format is None and _format_of(self.path) is None:
            raise ConfigError(
                f'format: cannot tell the format of {self.path!r} from its extension; set format = "csv" or "json"'
            )
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"encoding: unknown encoding {self.encoding!r} (e.g. utf-8, cp1252, latin-1)") from None


def _format_of(path: str) -> str | None:
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json"}.get(suffix)


@dataclass
class _Row:
    """One parsed user before keys and managers are resolved: where it came from and its field values."""

    where: str
    values: dict[str, Any]
    extra: dict[str, Any]


class Connector:
    """Reads the whole file on every call and returns a :class:`Snapshot` (see the module docstring)."""

    # Every read is whole, so the pipeline passes the last cursor even on a periodic full read: the drop check
    # against the last complete read then holds on every run but an explicit ``syncd sync NAME --full``.
    every_read_is_whole = True

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.format = settings.format or _format_of(settings.path) or "csv"

    def read(self, cursor: str | None) -> Snapshot:
        """Return every user and group in the file; ``cursor`` is not needed, since a file has no change feed."""
        if self.format == "json":
            return self._read_json(cursor)
        snapshot = self.stream(cursor)
        users = list(snapshot.users)
        snapshot.users = users
        snapshot.groups = _groups_of(users)
        return snapshot

    def stream(self, cursor: str | None) -> Snapshot:
        """The read as a stream: a :class:`Snapshot` whose ``users`` yields one record at a time and whose verdict
        (``complete``, ``problems``, ``cursor``) is final only once ``users`` is exhausted (until then it says
        incomplete). Each user names its groups, so ``groups`` is empty for a CSV: the stager creates the groups
        the users name. The file is first copied to a private temporary file while it is hashed and its encoding
        checked, so that a file rewritten meanwhile is copied again (then refused) and the stream parses bytes
        that cannot change under it; memory stays flat in the file's size. A JSON file is parsed whole."""
        if self.format == "json":
            return self._read_json(cursor)
        copy, digest = self._private_copy()
        try:
            reader, header, columns = self._csv_reader(copy)
        except BaseException:
            copy.close()
            raise
        snapshot = Snapshot(users=[], groups=[], cursor=None, complete=False)
        snapshot.users = self._stream_csv(copy, digest, reader, header, columns, _records_of(cursor), snapshot)
        return snapshot

    def _read_json(self, cursor: str | None) -> Snapshot:
        raw = self._read_bytes()
        rows, groups_in, problems = self._parse_json(self._decode(raw))
        users, groups = _build(rows, groups_in, problems)
        count = len(users)
        self._judge(problems, count, _records_of(cursor))
        cursor_out = f"sha256:{hashlib.sha256(raw).hexdigest()};records={count}"
        return Snapshot(users=users, groups=groups, cursor=cursor_out, complete=not problems, problems=problems)

    def _judge(self, problems: list[str], count: int, baseline: int | None) -> None:
        """Put the problems in file order and add the drop check against the last complete read."""
        problems.sort(key=_problem_order)
        if not problems and baseline is not None and baseline >= DROP_BASELINE and count < baseline / 2:
            problems.append(
                f"the file holds {count} people where the last complete read held {baseline} (cut short or "
                f"partly exported?); nothing is removed. If the drop is real, run 'syncd sync {self.name} --full'"
            )

    def _stream_csv(
        self,
        copy: IO[bytes],
        digest: str,
        reader: Any,
        header: list[str],
        columns: list[str | None],
        baseline: int | None,
        snapshot: Snapshot,
    ) -> Iterator[UserRecord]:
        """Yield the CSV's users in file order, then set the snapshot's verdict (see :meth:`stream`)."""
        with copy:
            problems: list[str] = []
            index: dict[str, str] | None = None
            if "manager" in columns:
                # Managers are named by email, user name or employee id: resolving them needs every person's
                # identifiers first, so a file with a manager column is parsed twice (the index only, then records).
                index = _index(_people(self._csv_rows(reader, header, columns, []), [], {}))
                copy.seek(0)
                reader, _, _ = self._csv_reader(copy)
            groups: dict[str, str] = {}
            count = 0
            last_line = [1]
            for row, values in _people(self._csv_rows(reader, header, columns, problems, last_line), problems, {}):
                count += 1
                yield _user(row, values, index or {}, groups)
            if count and not _ends_a_line(copy, self._encoding()):
                problems.append(
                    f"line {last_line[0]}: the last record has no line end, so the file may be cut short; read "
                    "as incomplete (nothing removed). An export ends every record with a line break"
                )
            self._judge(problems, count, baseline)
            snapshot.problems = problems
            snapshot.cursor = f"sha256:{digest};records={count}"
            snapshot.complete = not problems

    def _fail(self, what: str, fix: str) -> ConnectorError:
        return ConnectorError(f"source {self.name}: {self.settings.path}: {what}; {fix}")

    def _read_bytes(self) -> bytes:
        """The file's bytes (JSON is parsed whole): its private copy read back."""
        copy, _ = self._private_copy(check_encoding=False)
        with copy:
            return copy.read()

    def _private_copy(self, check_encoding: bool = True) -> tuple[IO[bytes], str]:
        """A private temporary copy of the file and the SHA-256 of its bytes, copied again once when the file
        changed during the copy (rewritten in place); then refused. The encoding is checked on the way."""
        for _ in range(2):
            copy = tempfile.TemporaryFile()  # noqa: SIM115 (returned open: the stream closes it)
            try:
                digest, changed = self._copy_once(copy, check_encoding)
            except BaseException:
                copy.close()
                raise
            if not changed:
                copy.seek(0)
                return copy, digest
            copy.close()
        raise self._fail(
            "changed while it was read, twice (rewritten in place?)",
            "the next run reads it again; have the exporter write to a temp name and rename it into place",
        )

    def _copy_once(self, copy: IO[bytes], check_encoding: bool) -> tuple[str, bool]:
        """Copy through one open handle; changed when its size or modification time moved meanwhile."""
        path = Path(self.settings.path)
        digest = hashlib.sha256()
        decoder = codecs.getincrementaldecoder(self._encoding())() if check_encoding else None
        size = lines = 0
        try:
            with path.open("rb") as handle:
                before = os.fstat(handle.fileno())
                for chunk in _chunks(handle):
                    if decoder is not None:
                        self._check_decoding(decoder, chunk, lines)
                    digest.update(chunk)
                    copy.write(chunk)
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                if decoder is not None:
                    self._check_decoding(decoder, b"", lines, final=True)
                after = os.fstat(handle.fileno())
        except FileNotFoundError:
            raise self._fail("file not found", "check the source's path") from None
        except IsADirectoryError:
            raise self._fail("is a directory, not a file", "point path at the export file") from None
        except OSError as error:
            raise self._fail(f"cannot read it ({error.strerror})", "check the path and its permissions") from None
        moved = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
        return digest.hexdigest(), moved or size != after.st_size

    def _check_decoding(
        self, decoder: codecs.IncrementalDecoder, chunk: bytes, lines: int, final: bool = False
    ) -> None:
        pending = decoder.getstate()[0]
        try:
            decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            line = lines + (pending + chunk)[: error.start].count(b"\n") + 1
            raise self._fail(
                f"line {line} is not valid {self.settings.encoding}",
                'save the file as UTF-8 or set encoding (e.g. encoding = "cp1252")',
            ) from None

    def _encoding(self) -> str:
        encoding = self.settings.encoding
        return "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self._encoding())
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise self._fail(
                f"line {line} is not valid {self.settings.encoding}",
                'save the file as UTF-8 or set encoding (e.g. encoding = "cp1252")',
            ) from None

    def _csv_reader(self, copy: IO[bytes]) -> tuple[Any, list[str], list[str | None]]:
        """A CSV reader over the copy, past its header line, with the header and the field each column holds."""
        copy.seek(0)
        text = io.TextIOWrapper(copy, encoding=self._encoding(), newline="")
        first_line = text.readline()
        text.detach()
        first_line = first_line.split("\n", 1)[0]
        if not first_line.strip():
            raise self._fail("no header line (the file is empty or starts blank)", "export the file with its header")
        delimiter = self.settings.delimiter or max(_DELIMITERS, key=first_line.count)
        copy.seek(0)
        # Detached by the caller before another reader over the copy is made: a dropped wrapper closes the copy.
        reader = csv.reader(_Text(copy, encoding=self._encoding(), newline=""), delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except csv.Error as error:
            raise self._fail(f"cannot parse the header line ({error})", "fix or re-export the file") from None
        return reader, header, self._map_columns(header)

    def _csv_rows(
        self,
        reader: Any,
        header: list[str],
        columns: list[str | None],
        problems: list[str],
        last_line: list[int] | None = None,
    ) -> Iterator[_Row]:
        """The CSV's rows one at a time; ``last_line[0]`` follows the line the latest record started on."""
        fields = [(index, name) for index, name in enumerate(columns) if name is not None]
        kept = [
            (index, title.strip()) for index, title in enumerate(header) if columns[index] is None and title.strip()
        ]
        width = len(header)
        for line, cells in _records(reader, problems):
            if last_line is not None:
                last_line[0] = line
            if len(cells) != width:
                if any(cell.strip() for cell in cells):
                    problems.append(f"line {line}: {len(cells)} fields where the header has {width}; row skipped")
                continue
            values = {name: value for index, name in fields if (value := cells[index].strip())}
            extra = {title: value for index, title in kept if (value := cells[index].strip())}
            if not values and not extra and not any(cell.strip() for cell in cells):
                continue
            yield _Row(f"line {line}", values, extra)

    def _map_columns(self, header: list[str]) -> list[str | None]:
        """Return the field each column holds (None: kept as an attribute); refuse a file without an identifier."""
        explicit = {normalize_header(h): name for name, h in self.settings.columns.items() if h}
        mapped: list[str | None] = []
        seen: dict[str, str] = {}
        for title in header:
            key = normalize_header(title)
            name = explicit.get(key) or _alias(key, self.settings.columns)
            if name is not None and name in seen:
                raise self._fail(
                    f"columns {seen[name]!r} and {title!r} both mean {name}",
                    f'name the one to use in the source\'s columns setting (columns = {{{name} = "{seen[name]}"}})',
                )
            if name is not None:
                seen[name] = title
            mapped.append(name)
        missing = [name for name, title in self.settings.columns.items() if title and name not in seen]
        if missing:
            raise self._fail(
                f"no column {self.settings.columns[missing[0]]!r} (columns.{missing[0]})",
                f"the header has: {', '.join(h.strip() for h in header)}",
            )
        if "email" not in seen and "user_name" not in seen:
            raise self._fail(
                "no email or user name column",
                f"the header has: {', '.join(h.strip() for h in header)}; "
                'rename a column (e.g. Email) or set columns = {email = "..."}',
            )
        return mapped

    def _parse_json(self, text: str) -> tuple[list[_Row], list[Any], list[str]]:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise self._fail(
                f"not valid JSON at line {error.lineno} column {error.colno} ({error.msg})", "fix or re-export the file"
            ) from None
        if isinstance(document, list):
            users, groups = document, []
        elif isinstance(document, dict) and isinstance(document.get("users"), list):
            users, groups = document["users"], document.get("groups") or []
            if not isinstance(groups, list):
                raise self._fail('"groups" is not a list', 'give "groups" as a list of {"name", "members"} objects')
        else:
            raise self._fail(
                'expected a list of users or an object with a "users" list',
                "see the file connector's documentation for the JSON shape",
            )
        explicit = {normalize_header(h): name for name, h in self.settings.columns.items() if h}
        rows: list[_Row] = []
        problems: list[str] = []
        try:
            lines = _element_lines(text, "users" if isinstance(document, dict) else None)
        except (IndexError, StopIteration, ValueError):
            lines = []
        for index, item in enumerate(users):
            where = f"line {lines[index]} (users[{index}])" if index < len(lines) else f"users[{index}]"
            if not isinstance(item, dict):
                problems.append(f"{where}: expected an object, got {type(item).__name__}; skipped")
                continue
            values: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for key, value in item.items():
                name = explicit.get(normalize_header(key)) or _alias(normalize_header(key), self.settings.columns)
                if name is None:
                    extra[key] = value
                elif value is not None and value != "":
                    values[name] = value
            rows.append(_Row(where, values, extra))
        return rows, groups, problems


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _element_lines(text: str, key: str | None) -> list[int]:
    """The line each element of the top-level array (or of the array under ``key``) starts on.

    ``json`` keeps no positions, so this walks the already-validated text once more with the decoder's own
    ``scan_once``, value by value, counting newlines as it goes.
    """
    scan = json.JSONDecoder().scan_once
    index = _WHITESPACE.match(text, 0).end()
    if key is not None:
        found: int | None = None
        index += 1
        while True:
            index = _WHITESPACE.match(text, index).end()
            if text[index] == "}":
                break
            name, index = scan(text, index)
            index = _WHITESPACE.match(text, index).end() + 1
            index = _WHITESPACE.match(text, index).end()
            if name == key:
                found = index
            _, index = scan(text, index)
            index = _WHITESPACE.match(text, index).end()
            if text[index] == ",":
                index += 1
        if found is None:
            return []
        index = found
    starts: list[int] = []
    index += 1
    while True:
        index = _WHITESPACE.match(text, index).end()
        if text[index] == "]":
            break
        starts.append(index)
        _, index = scan(text, index)
        index = _WHITESPACE.match(text, index).end()
        if text[index] == ",":
            index += 1
    lines, line, position = [], 1, 0
    for start in starts:
        line += text.count("\n", position, start)
        position = start
        lines.append(line)
    return lines


def _problem_order(problem: str) -> tuple[int, int]:
    """Problems in file order: rows (``line N``, ``users[N]``) first, then the JSON groups list."""
    match = re.match(r"(line |users\[|groups\[)(\d+)", problem)
    if match is None:
        return (2, 0)
    return (1 if match.group(1) == "groups[" else 0, int(match.group(2)))


def _alias(header: str, columns: Mapping[str, str]) -> str | None:
    """The field a normalized header names by alias, unless ``columns`` assigns that field to another header."""
    name = HEADER_ALIASES.get(header)
    return None if name in columns else name


def _records(reader: Any, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, cells) per CSV record; a quoting error ends the file with a problem line."""
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append(f"line {line}: cannot parse ({error}); this and later rows skipped")
            return
        yield line, cells


class _Text(io.TextIOWrapper):
    """Text over the private copy that leaves the copy open when it is dropped (the stream owns the copy)."""

    def __del__(self) -> None:
        if not self.buffer.closed:
            self.detach()


def _chunks(handle: io.BufferedReader) -> Iterator[bytes]:
    """The open file's bytes in pieces of a megabyte."""
    while chunk := handle.read(1 << 20):
        yield chunk


def _ends_a_line(copy: IO[bytes], encoding: str) -> bool:
    """Whether the file's last character is a line end (a writer stopped mid-record leaves none)."""
    copy.seek(0, io.SEEK_END)
    size = copy.tell()
    copy.seek(max(0, size - 8))
    return copy.read().decode(encoding, errors="ignore").endswith(("\n", "\r"))


def _records_of(cursor: str | None) -> int | None:
    """The number of people of the last complete read, from a cursor ``sha256:<hex>;records=<n>``."""
    match = re.search(r";records=(\d+)$", cursor or "")
    return int(match.group(1)) if match else None


def _control_character(value: str) -> str | None:
    """The first control or format character (Unicode Cc/Cf) of an identifier, as ``U+XXXX``."""
    if value.isprintable():
        return None  # printable text holds neither (str.isprintable excludes every "Other" category)
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf"):
            return f"U+{ord(char):04X}"
    return None


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _active(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    word = " ".join(_text(value).casefold().replace("_", " ").split())
    if word in _ACTIVE or word == "":
        return True
    if word in _INACTIVE:
        return False
    raise ValueError(f"active value {_text(value)!r} is not one of true/false, yes/no, 1/0, active/inactive")


def _group_names(value: Any) -> list[str]:
    parts: Iterable[Any] = value if isinstance(value, list) else _GROUP_SEPARATOR.split(_text(value))
    names: list[str] = []
    folded: set[str] = set()
    for part in parts:
        name = _text(part)
        if name and name.casefold() not in folded:
            folded.add(name.casefold())
            names.append(name)
    return names


def _people(rows: Iterable[_Row], problems: list[str], seen: dict[str, str]) -> Iterator[tuple[_Row, dict[str, Any]]]:
    """Each row fit to be a person, with its field values checked and its key; the others become problem lines.
    ``seen`` maps each key to where it was first seen, so a key seen before is such a problem."""
    for row in rows:
        values = {
            name: v if type(v) is str or name == "groups" or name == "active" else _text(v)
            for name, v in row.values.items()
        }
        hidden = next(
            ((name, char) for name in _IDENTIFIERS if (char := _control_character(values.get(name) or ""))), None
        )
        if hidden is not None:
            problems.append(f"{row.where}: {hidden[0]} holds the control character {hidden[1]}; row skipped")
            continue
        email = values.get("email")
        user_name = values.get("user_name") or email
        if not user_name:
            problems.append(f"{row.where}: no email and no user name; row skipped")
            continue
        if email is not None and "@" not in email:
            problems.append(f"{row.where}: email {email!r} is not an address; row skipped")
            continue
        try:
            values["active"] = _active(values.get("active"))
        except ValueError as error:
            problems.append(f"{row.where}: {error}; row skipped")
            continue
        key = values.get("employee_number") or (email or user_name).lower()
        if key in seen:
            problems.append(f"{row.where}: key {key!r} already used by {seen[key]}; row skipped")
            continue
        seen[key] = row.where
        values["user_name"], values["key"] = user_name, key
        yield row, values


def _index(people: Iterable[tuple[_Row, dict[str, Any]]]) -> dict[str, str]:
    """Every way a row names a person (email, user name, employee id, key) → that person's key."""
    index: dict[str, str] = {}
    keys: dict[str, str] = {}
    for _, values in people:
        for ref in (values.get("user_name"), values.get("email")):
            if ref:
                index.setdefault(ref.lower(), values["key"])
        keys[values["key"]] = values["key"]
        if values.get("employee_number"):
            keys[values["employee_number"]] = values["key"]
    index.update(keys)
    return index


def _user(row: _Row, values: dict[str, Any], index: Mapping[str, str], groups: dict[str, str]) -> UserRecord:
    """The record of one checked row; ``groups`` maps a folded group name to its first spelling (its key)."""
    keys = [groups.setdefault(name.casefold(), name) for name in _group_names(values.get("groups", []))]
    attributes = dict(row.extra)
    if values.get("role"):
        attributes["role"] = values["role"]
    manager = values.get("manager")
    if manager:
        attributes["manager"] = manager
    display = values.get("display_name") or (
        " ".join(p for p in (values.get("given_name"), values.get("family_name")) if p) or None
    )
    return UserRecord(
        key=values["key"],
        user_name=values["user_name"],
        email=values.get("email"),
        external_id=values.get("external_id"),
        display_name=display,
        given_name=values.get("given_name"),
        family_name=values.get("family_name"),
        active=values["active"],
        department=values.get("department"),
        title=values.get("title"),
        employee_number=values.get("employee_number"),
        manager_key=_resolve(index, manager) if manager else None,
        groups=tuple(keys),
        attributes=attributes,
    )


def _groups_of(users: list[UserRecord]) -> list[GroupRecord]:
    """The groups the users name, each with its members, in the order first named."""
    members: dict[str, set[str]] = {}
    for user in users:
        for key in user.groups:
            members.setdefault(key, set()).add(user.key)
    return [GroupRecord(key=key, display_name=key, member_keys=frozenset(keys)) for key, keys in members.items()]


def _build(rows: list[_Row], groups_in: list[Any], problems: list[str]) -> tuple[list[UserRecord], list[GroupRecord]]:
    """Turn parsed rows into records: keys, duplicates, managers, and groups from both users and a groups list."""
    parsed = list(_people(rows, problems, {}))
    index = _index(parsed)
    group_names: dict[str, str] = {}
    users = [_user(row, values, index, group_names) for row, values in parsed]
    group_members: dict[str, set[str]] = {}
    group_ids: dict[str, str | None] = {}
    for user in users:
        for gkey in user.groups:
            group_members.setdefault(gkey, set()).add(user.key)

    def group_key(name: str) -> str:
        return group_names.setdefault(name.casefold(), name)

    listed: list[tuple[str, Mapping[str, Any]]] = []
    for position, item in enumerate(groups_in):
        where = f"groups[{position}]"
        name = (item.get("name") or item.get("display_name")) if isinstance(item, dict) else None
        if not name:
            problems.append(f"{where}: a group needs a name; skipped")
            continue
        gkey = group_key(_text(name))
        group_members.setdefault(gkey, set())
        external = item.get("external_id") or item.get("id")
        group_ids[gkey] = _text(external) if external is not None else None
        listed.append((where, item))
    for where, item in listed:
        gkey = group_key(_text(item.get("name") or item.get("display_name")))
        members = item.get("members") or []
        if not isinstance(members, list):
            problems.append(f"{where}: members is not a list; its members skipped")
            continue
        for ref in members:
            text = _text(ref)
            member = _resolve(index, text) or group_names.get(text.casefold())
            if member is None:
                problems.append(f"{where}: member {text!r} is neither a user nor a group in the file")
                continue
            group_members[gkey].add(member)

    groups = [
        GroupRecord(key=gkey, display_name=gkey, external_id=group_ids.get(gkey), member_keys=frozenset(members))
        for gkey, members in group_members.items()
    ]
    return users, groups


def _resolve(index: Mapping[str, str], ref: str) -> str | None:
    """The key of the user an email, user name, employee id or key names, if the file holds them."""
    return index.get(ref) or index.get(ref.lower())
