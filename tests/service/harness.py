"""Run ``syncd serve`` with a test run function in place of the pipeline: ``python -m tests.service.harness``.

Everything else is the real command (argument parsing, config, store, scheduler, run processes, HTTP, signals); the
run function (``module:function``) is pickled by reference to each run process, which imports it there.
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> int:
    run_name, *syncd_args = argv
    module_name, _, function = run_name.partition(":")
    run = getattr(importlib.import_module(module_name), function)
    from syncd.cli import build_parser
    from syncd.service.serve import serve

    args = build_parser().parse_args(syncd_args)
    return serve(args.config, listen=args.listen, metrics_listen=args.metrics_listen, run=run, processes=args.processes)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
