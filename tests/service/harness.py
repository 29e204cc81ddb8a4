"""Run ``syncd serve`` with a test run function in place of the pipeline: ``python -m tests.service.harness``.

Everything else is the real command (argument parsing, config, store, scheduler, run processes, HTTP, signals).
Until the file connector lands, a minimal ``connectors.file`` with the ``path`` key stands in so configs can
declare file sources; it is installed when this module is imported, which also happens in every run process
(multiprocessing's spawn imports the parent's main module), so the pickled config unpickles there too.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types


@dataclasses.dataclass(frozen=True)
class StandInSettings:
    path: str
    format: str | None = None


def ensure_file_connector() -> None:
    try:
        importlib.import_module("connectors.file")
    except ModuleNotFoundError as error:
        if error.name != "connectors.file":
            raise
        module = types.ModuleType("connectors.file")
        StandInSettings.__module__ = "connectors.file"
        StandInSettings.__qualname__ = StandInSettings.__name__ = "Settings"
        module.Settings = StandInSettings  # type: ignore[attr-defined]
        sys.modules["connectors.file"] = module


ensure_file_connector()


def main(argv: list[str]) -> int:
    run_name, *syncd_args = argv
    module_name, _, function = run_name.partition(":")
    run = getattr(importlib.import_module(module_name), function)
    from syncd.cli import build_parser
    from syncd.serve import serve

    args = build_parser().parse_args(syncd_args)
    return serve(args.config, listen=args.listen, run=run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
