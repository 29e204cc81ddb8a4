"""Printing answers: aligned text tables for people, JSON for scripts (``--format json``), progress only on a TTY."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def add_format(parser: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")) -> None:
    parser.add_argument("--format", choices=choices, default="text", help="output format (default: text)")


def print_json(value: Any, stream: TextIO | None = None) -> None:
    json.dump(value, stream or sys.stdout, indent=2, ensure_ascii=False, default=str)
    (stream or sys.stdout).write("\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


class Progress:
    """A one-line counter on stderr when it is a terminal; silent in pipes, files and under systemd.

    The counter redraws its line with ``\r``; the line is closed (a newline) as soon as the count reaches its total,
    or by :meth:`finish`, so whatever is printed next starts on a line of its own.
    """

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label, self.total, self.done = label, total, 0
        self._open = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.enabled and (self.done % 1000 == 0 or self.done == self.total):
            of = f"/{self.total}" if self.total else ""
            self.stream.write(f"\r{self.label}: {self.done}{of}")
            self._open = True
            if self.done == self.total:
                self.finish()
            else:
                self.stream.flush()

    def finish(self) -> None:
        """Close the counter's line, if one is open."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def plural(count: int, noun: str) -> str:
    """``1 member``, ``14 members``, ``3 entries``: counts in plain English."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"


def changes(count: int) -> str:
    return plural(count, "change")
