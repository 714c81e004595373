"""What both crash benchmarks share: a held job's start under a worker, and how a run is reported."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aredis

from ..context import POLL_S
from ..report import Spread, seconds
from .process import WorkerProcess
from .recorder import started_key

#: How long worker A may take to start every held job.
TAKE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    jobs: int
    recovered: int
    #: None when the cap was reached before every job ran again.
    seconds: float | None


async def wait_started(redis: aredis.Redis, worker: WorkerProcess, count: int, timeout: float) -> int:
    """How many held jobs have started under `worker`, waiting up to `timeout` for `count`."""
    deadline = time.monotonic() + timeout
    while (started := await redis.hlen(started_key(worker.pid))) < count and time.monotonic() < deadline:
        worker.check_alive()
        await asyncio.sleep(POLL_S)
    return started


async def recovery(redis: aredis.Redis, worker: WorkerProcess, count: int, since: float, cap_s: float) -> Sample:
    """The sample of `count` jobs lost at `since` (wall clock) and awaited under `worker`."""
    recovered = await wait_started(redis, worker, count, cap_s)
    if recovered < count:
        return Sample(count, recovered, None)
    starts = await redis.hvals(started_key(worker.pid))
    return Sample(count, recovered, max(float(start) for start in starts) - since)


def cell(samples: list[Sample], cap_s: float) -> str:
    measured = [sample.seconds for sample in samples if sample.seconds is not None]
    if len(measured) == len(samples):
        return Spread.of(measured).format(seconds)
    capped = [sample for sample in samples if sample.seconds is None]
    recovered = min(sample.recovered for sample in capped)
    return f">{cap_s:.0f} s (capped in {len(capped)}/{len(samples)} runs; {recovered}/{capped[0].jobs} running again)"
