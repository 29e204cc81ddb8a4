"""The threads of one read: requests side by side, and the first real failure stops all of them.

A snapshot reads the user list and many member lists at once. When one of them fails for good, the others must
not go on spending requests (and rate-limit budget) on a read that will be thrown away, and the error the read
raises must be that first failure — not the "cancelled" of a sibling that merely stopped because of it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from connectors.okta.client import Cancelled, NotFound, OktaClient
from syncd.common.errors import ConnectorError

T = TypeVar("T")


class ReadWorkers:
    def __init__(self, client: OktaClient, workers: int) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"okta-{client.source}")
        self._futures: list[Future[Any]] = []

    def submit(self, task: Callable[..., T], *args: Any) -> Future[T]:
        future = self._pool.submit(task, *args)
        self._futures.append(future)
        future.add_done_callback(self._watch)
        return future

    def _watch(self, future: Future[Any]) -> None:
        if _real_failure(future) is not None:
            self._client.cancel()

    def __enter__(self) -> ReadWorkers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self._pool.shutdown(wait=True)
            return
        self._client.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(error, Cancelled):
            first = next((e for e in map(_real_failure, self._futures) if e is not None), None)
            raise first or ConnectorError(
                f"source {self._client.source}: the read stopped before it finished; nothing was applied"
            ) from None


def _real_failure(future: Future[Any]) -> BaseException | None:
    if not future.done() or future.cancelled():
        return None
    error = future.exception()
    return None if error is None or isinstance(error, Cancelled | NotFound) else error
