"""A schedule trigger whose jitter is drawn around each slot, so that it never accumulates.

APScheduler 3 hands a trigger the previous *fire* time; its ``IntervalTrigger`` adds the interval to that (jittered)
time and then jitters again, so on a 15 s schedule the runs drifted 1, 2, 3 ... 5.6 s past their slots
(https://apscheduler.readthedocs.io/en/3.x/modules/triggers/interval.html, "jitter"). This trigger first finds the
un-jittered slot after the previous fire time, using the plain trigger the slots come from (an epoch-aligned
interval or a cron expression), and adds a fresh jitter in ``[0, jitter)`` to that slot alone. As long as the jitter
is shorter than the period, the slot after a jittered fire time is the next slot, so run k fires within
``jitter`` seconds of slot k however long the service has been up (docs/architecture.md, "Running it").
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

TICK = timedelta(microseconds=1)


class SlotTrigger(BaseTrigger):
    """Fire once per slot of ``slots``, ``uniform(0, jitter)`` seconds after the slot itself."""

    def __init__(self, slots: BaseTrigger, jitter: float, rng: random.Random | None = None) -> None:
        self.slots = slots
        self.jitter = jitter
        self.rng = rng or random.Random()

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (a fire time lies at or after its own slot)."""
        return self.slots.get_next_fire_time(None, after + TICK)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None:
            slot = self.slots.get_next_fire_time(None, now)
        else:
            slot = self.next_slot(previous_fire_time)
        if slot is None:
            return None
        return slot + timedelta(seconds=self.rng.uniform(0, self.jitter)) if self.jitter > 0 else slot

    def __str__(self) -> str:
        return f"{self.slots} (jitter {self.jitter:g} s around each slot)"

    def __repr__(self) -> str:
        return f"<SlotTrigger slots={self.slots!r} jitter={self.jitter!r}>"
