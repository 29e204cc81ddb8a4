"""How long to wait before the next Graph request: Retry-After, backoff, and pacing near the limit.

Follows "Microsoft Graph throttling guidance": on 429 (and 503) wait the seconds ``Retry-After`` names, then retry;
without it, back off exponentially. Directory ("identity and access") answers carry
``x-ms-throttle-limit-percentage`` once the app has used more than 0.8 of its budget (values 0.8 to 1.8 of a
10-second window), so the reader slows down before Graph starts refusing. The total wait of one read is bounded
(``max_throttle_wait``): past it the read stops with an error and the next scheduled run resumes from the cursor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

#: The directory's throttling window in seconds (service-specific limits, "Identity and access service limits").
WINDOW_SECONDS = 10.0
#: Usage fraction from which Graph reports x-ms-throttle-limit-percentage.
PACING_FROM = 0.8
#: Retry-After values above this are taken as this (a misbehaving proxy must not stall a run for hours).
LONGEST_RETRY_AFTER = 120.0


class Throttle:
    """The waits of one source's reads; ``sleep`` and ``clock`` are replaceable so tests can record the waits."""

    def __init__(
        self,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.waited = 0.0
        self.paced = 0.0
        self.waits: list[float] = []
        self._pause = 0.0

    def start_read(self) -> None:
        """Reset the budget: each read may wait up to ``max_wait`` in total for throttling and retries."""
        self.waited = 0.0
        self.paced = 0.0
        self._pause = 0.0

    def before_request(self) -> None:
        """Apply the pacing pause an earlier answer asked for."""
        if self._pause > 0:
            self.paced += self._pause
            self.waits.append(self._pause)
            self.sleep(self._pause)
            self._pause = 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read ``x-ms-throttle-limit-percentage`` from a successful answer and pace the next request."""
        value = headers.get("x-ms-throttle-limit-percentage")
        if value is None:
            return
        try:
            used = float(value)
        except ValueError:
            return
        if used >= PACING_FROM:
            self._pause = min(WINDOW_SECONDS, WINDOW_SECONDS * (used - PACING_FROM))

    def retry_after(self, headers: Mapping[str, str], attempt: int) -> float:
        """Seconds to wait before retrying a throttled or failed request (``attempt`` counts from 1)."""
        value = headers.get("Retry-After")
        if value is not None:
            seconds = _parse_retry_after(value)
            if seconds is not None:
                return min(LONGEST_RETRY_AFTER, seconds)
        return min(LONGEST_RETRY_AFTER, 2.0 ** (attempt - 1))

    def can_wait(self, seconds: float) -> bool:
        return self.waited + seconds <= self.max_wait

    def wait(self, seconds: float) -> None:
        """Wait before a retry; counted against ``max_wait`` (pacing pauses are not)."""
        if seconds <= 0:
            return
        self.waits.append(seconds)
        self.waited += seconds
        self.sleep(seconds)


def _parse_retry_after(value: str) -> float | None:
    """``Retry-After`` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
