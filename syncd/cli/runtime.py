"""Starting a command's runtime: the shell's start, plus one stderr note per change the config made to the store."""

from __future__ import annotations

import argparse
import sys

from syncd.admin import shell


def start_runtime(args: argparse.Namespace) -> shell.Runtime:
    """``shell.start`` for a command: an edited config changes its orgs (ledgered) on whichever command reads it
    first, so that command says so on stderr, once, instead of leaving the change to be found in the ledger."""
    runtime = shell.start(args.config)
    for line in runtime.declared:
        print(f"syncd: note: {line}", file=sys.stderr)
    return runtime
