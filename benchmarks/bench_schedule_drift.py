"""How far scheduled runs fire from their slots: APScheduler 3's jittered IntervalTrigger against syncd's SlotTrigger.

    python benchmarks/bench_schedule_drift.py [--schedule 15s] [--runs 100] [--seed 1]

Fire times are computed as APScheduler asks for them (each from the previous fire time), with no clock and no sleep;
prints each trigger's offset from its slot after the first eight runs, after the last one, and the largest.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from syncd.service.scheduler import EPOCH, build_trigger


def offsets(trigger, first_slot: datetime, period: float, start: datetime, runs: int) -> list[float]:
    found, previous, now = [], None, start
    for k in range(runs):
        previous = trigger.get_next_fire_time(previous, now)
        now = previous
        found.append((previous - (first_slot + timedelta(seconds=k * period))).total_seconds())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default="15s")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    slot_trigger, plain, period = build_trigger(args.schedule, "--schedule")
    slot_trigger.rng = random.Random(args.seed)
    random.seed(args.seed)
    interval = IntervalTrigger(seconds=period, start_date=EPOCH, timezone=UTC, jitter=slot_trigger.jitter)
    start = datetime.now(UTC)
    first = plain.get_next_fire_time(None, start)
    print(f"schedule {args.schedule}, jitter up to {slot_trigger.jitter:g} s, {args.runs} runs")
    for name, trigger in (("APScheduler IntervalTrigger", interval), ("syncd SlotTrigger", slot_trigger)):
        found = offsets(trigger, first, period, start, args.runs)
        print(
            f"{name:28} first eight {[round(o, 1) for o in found[:8]]}  last {found[-1]:.1f} s  max {max(found):.1f} s"
        )


if __name__ == "__main__":
    main()
