"""What the benchmark jobs do, identical for every system.

Each job carries its index, the wall-clock time it was enqueued and how long to sleep, so the
job itself can report when it started and finished; no system's own bookkeeping is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Workload(StrEnum):
    NOOP = "no-op"
    SLEEP = "sleep 25 ms"
    HOLD = "hold"  # crash recovery: report "started" with the worker's pid, then sleep long


#: Sleeps cycle through 0..50 ms, 25 ms on average, the same sequence for every system.
SLEEP_CYCLE_MS = 51
#: How long a held job sleeps: far beyond any cap, so only a crash ends it.
HOLD_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    index: int
    sleep_s: float
    hold: bool

    def args(self, enqueued_at: float) -> tuple[int, float, float, bool]:
        """The positional arguments of `bench_job` in every system."""
        return (self.index, enqueued_at, self.sleep_s, self.hold)


def jobs(workload: Workload, count: int) -> list[JobSpec]:
    match workload:
        case Workload.NOOP:
            return [JobSpec(i, 0.0, False) for i in range(count)]
        case Workload.SLEEP:
            return [JobSpec(i, (i % SLEEP_CYCLE_MS) / 1000, False) for i in range(count)]
        case Workload.HOLD:
            return [JobSpec(i, HOLD_SECONDS, True) for i in range(count)]
