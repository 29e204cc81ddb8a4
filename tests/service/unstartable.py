"""A run function whose module cannot be imported in a run process: the run process dies before it starts.

It stands in for whatever kills a fresh run process during its start-up (a sandbox refusing a call, a broken
install, no memory for a new interpreter); the service imports it fine, so ``syncd serve`` itself starts.
"""

from __future__ import annotations

import multiprocessing
from datetime import datetime

from syncd.config import Config

if multiprocessing.current_process().name != "MainProcess":
    raise ImportError("tests.service.unstartable cannot be imported in a run process (by design of this test)")


def run(
    config: Config, source_name: str, *, dry_run: bool, full: bool, actor: str | None, now: datetime | None
) -> None:
    raise AssertionError("never reached: the run process cannot import this module")
