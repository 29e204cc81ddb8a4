"""Okta rate limits: stay under a share of each bucket, cap concurrency, and wait out a 429 until the reset.

Okta counts requests per endpoint bucket per minute and reports the bucket on every response in
``X-Rate-Limit-Limit`` (the ceiling), ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Reset`` (UTC epoch seconds of
the window's end); a request past the ceiling gets ``429`` (developer.okta.com, "Rate limits" and "Rate limit best
practices"). The bucket is shared with every other integration and the Admin Console of the org, so the limiter
never lets the bucket's *total* use pass ``share × limit``: the rest stays free for others. The reset time is read
against the response's ``Date`` header, not our clock, so a skewed local clock neither stalls nor floods.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

_ID_SEGMENT = re.compile(r"/(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{15,}(?=/|$)")


def bucket_of(path: str) -> str:
    """The bucket key of a request path: ids become ``{id}`` (``/api/v1/groups/{id}/users``)."""
    return _ID_SEGMENT.sub("/{id}", path.split("?", 1)[0].rstrip("/"))


@dataclass
class _Bucket:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float = 0.0
    window: int | None = None  # the X-Rate-Limit-Reset that ``remaining`` was reported with: which window it counts
    in_flight: int = 0


class RateLimitTooLong(Exception):
    """The next window opens later than the configured ``max_wait``."""

    def __init__(self, bucket: str, seconds: float) -> None:
        super().__init__(f"{bucket} resets in {seconds:.0f}s")
        self.bucket = bucket
        self.seconds = seconds


class RateLimiter:
    """Per-bucket budget plus a concurrency cap, shared by every thread of one read."""

    def __init__(
        self,
        share: float,
        max_concurrency: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._share = share
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Condition()
        self._buckets: dict[str, _Bucket] = {}
        self.waited = 0.0

    @contextmanager
    def slot(self, bucket: str, concurrent: bool = True) -> Iterator[None]:
        """Hold one of the concurrent slots and one unit of the bucket's budget for the span of a request.

        ``concurrent=False`` skips the concurrency cap: the token request is made while an API request already
        holds its slot (requests calls the auth hook inside it), and must not wait for a slot of its own.
        """
        with self._slots if concurrent else nullcontext():
            self._reserve(bucket)
            try:
                yield
            finally:
                with self._lock:
                    self._buckets[bucket].in_flight -= 1
                    self._lock.notify_all()

    def _reserve(self, bucket: str) -> None:
        with self._lock:
            state = self._buckets.setdefault(bucket, _Bucket())
            while True:
                now = self._clock()
                if state.limit is not None and now >= state.reset_at:
                    state.limit = state.remaining = None  # a new window: its budget is unknown until a response
                if state.limit is None:
                    # Before the first answer of a window we know nothing about the bucket: one request at a time.
                    if state.in_flight == 0:
                        break
                    self._lock.wait(0.05)
                    continue
                used = state.limit - (state.remaining or 0) + state.in_flight
                if used < max(1, math.floor(state.limit * self._share)):
                    break
                if state.in_flight:
                    self._lock.wait(0.05)
                    continue
                delay = state.reset_at - now
                if delay > self._max_wait:
                    raise RateLimitTooLong(bucket, delay)
                self._lock.release()
                try:
                    self._sleep(delay)
                    self.waited += delay
                finally:
                    self._lock.acquire()
            state.in_flight += 1

    def observe(self, bucket: str, headers: Any, throttled: bool = False) -> None:
        """Record the bucket state a response reported; a 429 marks the bucket empty until its reset."""
        limit = _int(headers.get("X-Rate-Limit-Limit"))
        remaining = _int(headers.get("X-Rate-Limit-Remaining"))
        reset = _int(headers.get("X-Rate-Limit-Reset"))
        if limit is None or reset is None:
            if throttled:  # a 429 without headers: back off a little, as the best-practices page suggests
                with self._lock:
                    state = self._buckets.setdefault(bucket, _Bucket())
                    state.limit, state.remaining, state.reset_at = 1, 0, self._clock() + 1.0
                    state.window = None
            return
        server_now = _server_time(headers.get("Date"))
        # Date has whole seconds, so reset - Date never underestimates the wait.
        reset_at = self._clock() + max(0.0, reset - server_now)
        with self._lock:
            state = self._buckets.setdefault(bucket, _Bucket())
            if state.window is not None and reset < state.window:
                # A late answer of an earlier window says nothing about the current one.
                self._lock.notify_all()
                return
            # The reset time names the window an answer was counted in (the same in every answer of a window): an
            # answer with a later one opens a new window, however soon after the last answer it arrives.
            if state.limit is None or state.remaining is None or state.window is None or reset > state.window:
                state.remaining = remaining
                state.reset_at = reset_at
                state.window = reset
            else:  # answers of one window arrive out of order: the lowest remaining is the latest
                state.remaining = min(state.remaining, remaining if remaining is not None else limit)
            state.limit = max(limit, 1)
            if throttled:
                state.remaining = 0
            self._lock.notify_all()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _server_time(date: str | None) -> float:
    """The server's clock from ``Date`` (RFC 9110 §6.6.1); our own clock when the header is missing or bad."""
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()
