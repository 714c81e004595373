"""Crash recovery: kill -9 a worker holding jobs; how long until all of them run on another worker.

Worker A takes every held job (each reports its start under A's pid), worker B is started and
ready, then A is killed. The result is the time from the kill to the last job's start under B's
pid, capped: arq's answer (~310 s) is known, and quick runs stop waiting much sooner.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..context import POLL_S, BenchContext
from ..report import Section, Spread, Table, seconds
from .process import WorkerFailed, WorkerProcess
from .recorder import started_key
from .runner import Runner, conveyor_runner, peer_runners, round_robin
from .workload import Workload, jobs

TAKE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    jobs: int
    recovered: int
    #: None when the cap was reached before every job ran again.
    seconds: float | None


async def _wait_started(context: BenchContext, worker: WorkerProcess, count: int, timeout: float) -> int:
    """How many held jobs have started under `worker`, waiting up to `timeout` for `count`."""
    deadline = time.monotonic() + timeout
    while (started := await context.redis.hlen(started_key(worker.pid))) < count and time.monotonic() < deadline:
        worker.check_alive()
        await asyncio.sleep(POLL_S)
    return started


async def measure(runner_class: type[Runner], context: BenchContext) -> Sample:
    await context.reset()
    count = context.crash_jobs
    async with runner_class(context.redis_url, context.concurrency) as runner:
        argv = runner.worker_argv()
        async with WorkerProcess(argv, context.log_path(f"{runner.name} crash A")) as first:
            await first.wait_ready(context.redis)
            await runner.enqueue_all(jobs(Workload.HOLD, count))
            if await _wait_started(context, first, count, TAKE_TIMEOUT_S) < count:
                raise TimeoutError(f"worker A did not start all {count} jobs within {TAKE_TIMEOUT_S:.0f} s")
            async with WorkerProcess(argv, context.log_path(f"{runner.name} crash B")) as second:
                await second.wait_ready(context.redis)
                first.kill()
                killed_at = time.time()
                recovered = await _wait_started(context, second, count, context.crash_cap_s)
                if recovered < count:
                    return Sample(count, recovered, None)
                starts = await context.redis.hvals(started_key(second.pid))
                return Sample(count, recovered, max(float(start) for start in starts) - killed_at)


def _cell(samples: list[Sample], cap_s: float) -> str:
    measured = [sample.seconds for sample in samples if sample.seconds is not None]
    if len(measured) == len(samples):
        return Spread.of(measured).format(seconds)
    capped = [sample for sample in samples if sample.seconds is None]
    recovered = min(sample.recovered for sample in capped)
    return f">{cap_s:.0f} s (capped in {len(capped)}/{len(samples)} runs; {recovered}/{capped[0].jobs} running again)"


async def run(context: BenchContext) -> Section:
    conveyor = conveyor_runner()
    runners = [
        runner for runner in ([conveyor] if conveyor else []) + peer_runners(context.peers) if runner.crash_benchmark
    ]
    table = Table(
        f"Crash recovery: kill -9 a worker holding {context.crash_jobs} jobs, seconds until all run again "
        f"on another worker, median (min–max) of {context.repeat}, cap {context.crash_cap_s:.0f} s",
        ["System", "Recovery s"],
    )
    samples: dict[str, list[Sample]] = {runner.name: [] for runner in runners}
    failures: dict[str, str] = {}
    for turn in range(context.repeat):
        for runner_class in round_robin(runners, turn):
            label = f"crash {turn + 1}/{context.repeat} {runner_class.name}"
            try:
                sample = await measure(runner_class, context)
            except (WorkerFailed, TimeoutError) as error:
                failures[runner_class.name] = str(error).splitlines()[0]
                context.progress(f"{label}: FAILED {failures[runner_class.name]}")
                continue
            samples[runner_class.name].append(sample)
            outcome = "capped" if sample.seconds is None else f"{sample.seconds:.2f} s"
            context.progress(f"{label}: {sample.recovered}/{sample.jobs} running again, {outcome}")
    for runner_class in runners:
        runs = samples[runner_class.name]
        cell = _cell(runs, context.crash_cap_s) if runs else f"failed: {failures.get(runner_class.name, '?')}"
        table.rows.append([runner_class.name, cell])
    return context.section(
        "crash",
        "Crash recovery",
        [table],
        [
            "Worker B is started and ready before A is killed, so B's start-up time is not counted.",
            "Celery and RQ are not crash-tested (the brief's list is arq, SAQ, streaQ and Conveyor).",
            *(runner.note for runner in runners if runner.note),
            *([] if conveyor else ["Conveyor: runner not available yet (bench/queue/conveyor.py)."]),
        ],
    )
