"""Crash recovery: kill -9 a worker holding jobs; how long until all of them run on another worker.

Worker A takes every held job (each reports its start under A's pid), worker B is started and
ready, then A is killed. The result is the time from the kill to the last job's start under B's
pid, capped: arq's answer (~310 s) is known, and quick runs stop waiting much sooner. Conveyor
is also measured losing A's network instead (partition.py): its own table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..context import BenchContext
from ..report import Section, Table
from . import partition
from .process import WorkerFailed, WorkerProcess
from .recovery import TAKE_TIMEOUT_S, Sample, cell, recovery, wait_started
from .runner import Runner, conveyor_runner, peer_runners, round_robin
from .workload import Workload, jobs


async def measure(runner_class: type[Runner], context: BenchContext) -> Sample:
    await context.reset()
    count = context.crash_jobs
    async with runner_class(context.redis_url, context.concurrency) as runner:
        argv = runner.worker_argv()
        async with WorkerProcess(argv, context.log_path(f"{runner.name} crash A")) as first:
            await first.wait_ready(context.redis)
            await runner.enqueue_all(jobs(Workload.HOLD, count))
            if await wait_started(context.redis, first, count, TAKE_TIMEOUT_S) < count:
                raise TimeoutError(f"worker A did not start all {count} jobs within {TAKE_TIMEOUT_S:.0f} s")
            async with WorkerProcess(argv, context.log_path(f"{runner.name} crash B")) as second:
                await second.wait_ready(context.redis)
                first.kill()
                return await recovery(context.redis, second, count, time.time(), context.crash_cap_s)


@dataclass(frozen=True, slots=True)
class Case:
    """A row: a system, and how its worker A is lost."""

    label: str
    runner: type[Runner]
    measure: Callable[[type[Runner], BenchContext], Awaitable[Sample]]
    table: Table


async def run(context: BenchContext) -> Section:
    conveyor = conveyor_runner()
    runners = [
        runner for runner in ([conveyor] if conveyor else []) + peer_runners(context.peers) if runner.crash_benchmark
    ]
    sized = f"median (min–max) of {context.repeat}, cap {context.crash_cap_s:.0f} s"
    killed = Table(
        f"Crash recovery: kill -9 a worker holding {context.crash_jobs} jobs, seconds until all run again "
        f"on another worker, {sized}",
        ["System", "Recovery s"],
    )
    cut_off = Table(
        f"Cut-off host: a worker holding {context.crash_jobs} jobs loses its network (its veth goes down), "
        f"seconds until all run again on another worker, {sized}",
        ["System", "Recovery s"],
    )
    cases = [Case(runner.name, runner, measure, killed) for runner in runners]
    why_not = partition.unavailable()
    if conveyor and not why_not:
        cases.append(Case(f"{conveyor.name}, cut off", conveyor, partition.measure, cut_off))
    samples: dict[str, list[Sample]] = {case.label: [] for case in cases}
    failures: dict[str, str] = {}
    for turn in range(context.repeat):
        for case in round_robin(cases, turn):
            progress = f"crash {turn + 1}/{context.repeat} {case.label}"
            try:
                sample = await case.measure(case.runner, context)
            except (WorkerFailed, TimeoutError) as error:
                failures[case.label] = str(error).splitlines()[0]
                context.progress(f"{progress}: FAILED {failures[case.label]}")
                continue
            samples[case.label].append(sample)
            outcome = "capped" if sample.seconds is None else f"{sample.seconds:.2f} s"
            context.progress(f"{progress}: {sample.recovered}/{sample.jobs} running again, {outcome}")
    for case in cases:
        runs = samples[case.label]
        case.table.rows.append(
            [case.label, cell(runs, context.crash_cap_s) if runs else f"failed: {failures.get(case.label, '?')}"]
        )
    return context.section(
        "crash",
        "Crash recovery",
        [killed, *([cut_off] if cut_off.rows else [])],
        [
            "Worker B is started and ready before A is lost, so B's start-up time is not counted.",
            "Celery and RQ are not crash-tested (the brief's list is arq, SAQ, streaQ and Conveyor).",
            "Cut-off host (bench/queue/partition.py): worker A runs in a network namespace and reaches a Redis "
            "and a PostgreSQL of the measurement's own over a veth pair, which goes down; no connection closes, "
            "so only A's silence tells. Conveyor only" + (f"; not measured here: {why_not}." if why_not else "."),
            *(runner.note for runner in runners if runner.note),
            *([] if conveyor else ["Conveyor: runner not available yet (bench/queue/conveyor.py)."]),
        ],
    )
