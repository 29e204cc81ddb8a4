"""The config of a pre-fork ``syncd serve`` (:mod:`syncd.service.prefork`), passed from its supervisor to its HTTP
processes so that a reload takes effect in all of them at one moment.

The supervisor alone reads the config file; each version it has validated and declared is pickled to a file of its
own (``config-<generation>.pickle``) in the supervisor's working directory. Two 8-byte counters in a small shared
mapping (``generation``, mmap(2) of one file) say which generation is offered and which is committed:

1. *prepare*: the supervisor writes the new version, raises the offered generation and sends SIGHUP to the HTTP
   processes; each loads the offered version beside the one it uses and says so (``prepared-<pid>``);
2. *commit*: once every HTTP process has prepared (or :data:`PREPARE_WAIT_SECONDS` passed), the supervisor raises
   the committed generation, in the same turn between housekeeping runs as its own scheduler takes the config.

Every request in every HTTP process first reads the committed generation (a read from shared memory, no system
call) and swaps to the prepared version when it has moved on, so each request that starts after the commit uses
the new config, whichever process takes it, and none before it does: from a client's side, the reload happens at
one moment. A process that has not prepared that version (it started during the reload) loads it then.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from syncd.config import Config

PREPARE_WAIT_SECONDS = 10.0
"""How long a commit waits for the HTTP processes to prepare; one still loading then loads at its next request."""
_COUNTERS = struct.Struct("=QQ")
"""Offered and committed generation."""
_FILE = "generation"


class SharedConfig:
    """One side of the channel: the supervisor's (``writer=True``: offers and commits) or an HTTP process's."""

    def __init__(self, workdir: Path, *, writer: bool) -> None:
        self.workdir = workdir
        path = workdir / _FILE
        if writer:
            path.write_bytes(bytes(_COUNTERS.size))
        descriptor = os.open(path, os.O_RDWR if writer else os.O_RDONLY)
        try:
            access = mmap.ACCESS_WRITE if writer else mmap.ACCESS_READ
            self._counters = mmap.mmap(descriptor, _COUNTERS.size, access=access)
        finally:
            os.close(descriptor)

    def offered(self) -> int:
        return int(_COUNTERS.unpack_from(self._counters)[0])

    def committed(self) -> int:
        return int(_COUNTERS.unpack_from(self._counters)[1])

    def load(self, generation: int) -> Config:
        config = pickle.loads((self.workdir / f"config-{generation}.pickle").read_bytes())
        assert isinstance(config, Config)
        return config

    def load_committed(self) -> tuple[int, Config]:
        """The committed generation and its config (a commit between the two reads makes it try again)."""
        while True:
            generation = self.committed()
            try:
                return generation, self.load(generation)
            except FileNotFoundError:
                if self.committed() == generation:
                    raise

    # ----- the supervisor's side ---------------------------------------------------------------------------------
    def offer(self, config: Config) -> int:
        """Write ``config`` as the next generation and offer it; returns that generation."""
        generation = max(self.offered(), self.committed()) + 1
        partial = self.workdir / f"config-{generation}.pickle.new"
        partial.write_bytes(pickle.dumps(config))
        os.replace(partial, self.workdir / f"config-{generation}.pickle")
        _COUNTERS.pack_into(self._counters, 0, generation, self.committed())
        return generation

    def commit(self, generation: int) -> None:
        """Put ``generation`` in force for every request from now on; the versions before the previous one go."""
        _COUNTERS.pack_into(self._counters, 0, self.offered(), generation)
        for old in self.workdir.glob("config-*.pickle"):
            number = old.name.removeprefix("config-").removesuffix(".pickle")
            if number.isdigit() and int(number) < generation - 1:
                old.unlink(missing_ok=True)

    def wait_prepared(self, generation: int, pids: Iterable[int], alive: Callable[[int], bool]) -> list[int]:
        """Wait until each of ``pids`` still ``alive`` has prepared ``generation``; returns those that did not in
        :data:`PREPARE_WAIT_SECONDS`."""
        waiting = set(pids)
        deadline = time.monotonic() + PREPARE_WAIT_SECONDS
        while True:
            waiting = {pid for pid in waiting if alive(pid) and self._prepared_by(pid) < generation}
            if not waiting or time.monotonic() >= deadline:
                return sorted(waiting)
            time.sleep(0.005)

    def _prepared_by(self, pid: int) -> int:
        try:
            return int((self.workdir / f"prepared-{pid}").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0

    def forget(self, pid: int) -> None:
        (self.workdir / f"prepared-{pid}").unlink(missing_ok=True)

    # ----- an HTTP process's side --------------------------------------------------------------------------------
    def say_prepared(self, generation: int) -> None:
        partial = self.workdir / f"prepared-{os.getpid()}.new"
        partial.write_text(str(generation), encoding="utf-8")
        os.replace(partial, self.workdir / f"prepared-{os.getpid()}")


class CommittedConfig:
    """The config an HTTP process uses: the committed generation, swapped in by the first request (or the signal
    loop's tick) that sees the commit; :attr:`on_swap` puts it in the process's state."""

    def __init__(self, shared: SharedConfig) -> None:
        self.shared = shared
        self.on_swap: Callable[[Config], None] = lambda config: None
        self.generation, self.config = shared.load_committed()
        self._prepared: tuple[int, Config] | None = None
        self._lock = threading.Lock()
        self.refused: str | None = None
        """Why the last committed generation could not be loaded here (this process kept its config)."""
        shared.say_prepared(self.generation)

    def prepare(self, check: Callable[[Config, Config], None]) -> int:
        """Load the offered generation beside the one in use (SIGHUP); ``check`` refuses one this process cannot
        take (it raises). Returns the generation prepared."""
        generation = self.shared.offered()
        if generation > self.generation:
            config = self.shared.load(generation)
            check(self.config, config)
            self._prepared = (generation, config)
        self.shared.say_prepared(generation)
        return generation

    def follow(self) -> bool:
        """Swap to the committed generation if it has moved on; True when this call swapped."""
        generation = self.shared.committed()
        if generation == self.generation:
            return False
        with self._lock:
            if generation == self.generation:
                return False
            prepared, self._prepared = self._prepared, None
            try:
                config = prepared[1] if prepared and prepared[0] == generation else self.shared.load(generation)
            except (OSError, pickle.UnpicklingError, EOFError) as error:
                self.generation, self.refused = generation, f"config-{generation}.pickle: {error}"
                return False
            self.config, self.generation = config, generation
            self.on_swap(config)
        return True

    def middleware(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """``app`` (WSGI) following the commit before each request."""

        def following(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            self.follow()
            return app(environ, start_response)

        return following
