"""Queue throughput: N jobs through one worker process per system, every system alternately.

A measurement starts the system's worker, waits until its framework is up, then enqueues N jobs
from this process while the worker consumes them. Enqueue jobs/s is the client's rate; processing
jobs/s is N over first enqueue → last finish (the rate work gets done end to end); latency is each
job's finish time minus the enqueue time it carried.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

from ..context import POLL_S, BenchContext
from ..report import Section, Spread, Table, percentile, rate, seconds
from .process import WorkerFailed, WorkerProcess
from .recorder import FINISHED, Finished
from .runner import Runner, conveyor_runner, peer_runners, round_robin
from .workload import Workload, jobs

WORKLOADS = (Workload.NOOP, Workload.SLEEP)
#: Generous: arq's default 0.5 s polling and RQ's one-at-a-time are slow but must still finish.
FINISH_TIMEOUT_BASE_S = 120.0
FINISH_TIMEOUT_PER_JOB_S = 0.05
NOT_AVAILABLE = "queue: conveyor/best_peer = n/a (conveyor runner not available)"


@dataclass(frozen=True, slots=True)
class Sample:
    jobs: int
    enqueue_per_s: float
    processing_per_s: float
    latency_p50_s: float
    latency_p99_s: float


def summarize(records: list[Finished], enqueue_s: float) -> Sample:
    first_enqueue = min(record.enqueued_at for record in records)
    last_finish = max(record.finished_at for record in records)
    latencies = [record.finished_at - record.enqueued_at for record in records]
    return Sample(
        jobs=len(records),
        enqueue_per_s=len(records) / enqueue_s,
        processing_per_s=len(records) / (last_finish - first_enqueue),
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
    )


async def _wait_finished(context: BenchContext, worker: WorkerProcess, count: int) -> None:
    timeout = FINISH_TIMEOUT_BASE_S + FINISH_TIMEOUT_PER_JOB_S * count
    deadline = time.monotonic() + timeout
    while (done := await context.redis.llen(FINISHED)) < count:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{count} jobs finished after {timeout:.0f} s")
        await asyncio.sleep(POLL_S)


async def measure(runner_class: type[Runner], context: BenchContext, workload: Workload) -> Sample:
    await context.reset()
    async with runner_class(context.redis_url, context.concurrency) as runner:
        count = runner.job_count(workload, context.jobs)
        async with WorkerProcess(runner.worker_argv(), context.log_path(runner.name)) as worker:
            await worker.wait_ready(context.redis)
            started = time.perf_counter()
            await runner.enqueue_all(jobs(workload, count))
            enqueue_s = time.perf_counter() - started
            await _wait_finished(context, worker, count)
    entries = await context.redis.lrange(FINISHED, 0, -1)
    return summarize([Finished.parse(entry) for entry in entries], enqueue_s)


@dataclass
class Results:
    samples: dict[tuple[str, Workload], list[Sample]]
    failures: dict[tuple[str, Workload], str]

    def processing(self, name: str, workload: Workload) -> Spread | None:
        samples = self.samples.get((name, workload))
        return Spread.of([sample.processing_per_s for sample in samples]) if samples else None


async def collect(runners: list[type[Runner]], context: BenchContext) -> Results:
    results = Results(defaultdict(list), {})
    for turn in range(context.repeat):
        for workload in WORKLOADS:
            for runner_class in round_robin(runners, turn):
                key = (runner_class.name, workload)
                label = f"queue {turn + 1}/{context.repeat} {workload} {runner_class.name}"
                try:
                    sample = await measure(runner_class, context, workload)
                except (WorkerFailed, TimeoutError) as error:
                    results.failures[key] = str(error).splitlines()[0]
                    context.progress(f"{label}: FAILED {results.failures[key]}")
                    continue
                results.samples[key].append(sample)
                context.progress(f"{label}: {rate(sample.processing_per_s)} jobs/s")
    return results


def _table(workload: Workload, runners: list[type[Runner]], results: Results, context: BenchContext) -> Table:
    table = Table(
        f"Queue throughput, {workload}: {context.jobs:,} jobs, concurrency {context.concurrency}, "
        f"median (min–max) of {context.repeat}",
        ["System", "Jobs", "Enqueue jobs/s", "Processing jobs/s", "Latency p50 s", "Latency p99 s"],
    )
    for runner_class in runners:
        key = (runner_class.name, workload)
        samples = results.samples.get(key)
        if not samples:
            table.rows.append([runner_class.name, "—", f"failed: {results.failures.get(key, '?')}", "", "", ""])
            continue

        def spread(field: str) -> Spread:
            return Spread.of([getattr(sample, field) for sample in samples])  # noqa: B023 (used in this iteration)

        table.rows.append(
            [
                runner_class.name,
                f"{samples[0].jobs:,}",
                spread("enqueue_per_s").format(rate),
                spread("processing_per_s").format(rate),
                spread("latency_p50_s").format(seconds),
                spread("latency_p99_s").format(seconds),
            ]
        )
    return table


def ratio_line(conveyor: type[Runner] | None, peers: list[type[Runner]], results: Results) -> str:
    """Conveyor over the best peer, per workload; the headline is the lower (worse) of the two."""
    if conveyor is None:
        return NOT_AVAILABLE
    ratios = []
    for workload in WORKLOADS:
        ours = results.processing(conveyor.name, workload)
        theirs = [spread.median for peer in peers if (spread := results.processing(peer.name, workload))]
        if ours is None or not theirs:
            return "queue: conveyor/best_peer = n/a (a run failed, see the tables)"
        ratios.append(ours.median / max(theirs))
    return f"queue: conveyor/best_peer = {min(ratios):.2f}"


async def run(context: BenchContext) -> tuple[Section, str]:
    conveyor = conveyor_runner()
    peers = peer_runners(context.peers)
    runners = ([conveyor] if conveyor else []) + peers
    results = await collect(runners, context)
    section = context.section(
        "queue",
        "Queue throughput",
        [_table(workload, runners, results, context) for workload in WORKLOADS],
        [
            "One worker process per system, started and ready before enqueueing; the client enqueues "
            "while the worker consumes. Processing jobs/s = jobs / (first enqueue → last finish); "
            "latency = finish − enqueue, both recorded by the job itself in Redis.",
            "Systems alternate in round-robin order within each repetition; Redis is flushed between runs.",
            "The headline ratio is Conveyor's median processing jobs/s over the best peer's, per workload; "
            "the lower of the two workloads is reported.",
            *(runner.note for runner in runners if runner.note),
            *([] if conveyor else ["Conveyor: runner not available yet (bench/queue/conveyor.py)."]),
        ],
    )
    return section, ratio_line(conveyor, peers, results)
