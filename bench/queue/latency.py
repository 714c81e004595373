"""Enqueue-to-start latency at half of Conveyor's peak: `python -m bench latency`.

Peak is measured first, in the same run: Conveyor's processing jobs/s on the no-op workload
(as in the queue benchmark). Then each system gets the same steady load, half that peak, from
an open-loop enqueuer (job i is sent at t0 + i / rate whatever the answers before it did), for
a fixed duration, and every job records when it started. Baselines: tuned arq and SAQ.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict

from ..context import BenchContext
from ..report import Section, Spread, Table, milliseconds, percentile
from .process import WorkerFailed, WorkerProcess
from .recorder import FINISHED, Finished
from .runner import Runner, conveyor_runner, peer_runners, round_robin
from .throughput import _wait_finished, measure
from .workload import Workload, jobs

BASELINES = ("arq-tuned", "saq")
PERCENTILES = (50, 95, 99)


async def paced(runner: Runner, count: int, per_second: float) -> None:
    """Send `count` no-op jobs at `per_second`, on schedule even when answers are slow."""
    started = time.monotonic()
    sending: set[asyncio.Task] = set()
    for index, job in enumerate(jobs(Workload.NOOP, count)):
        delay = started + index / per_second - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(runner.enqueue(job, time.time()))
        sending.add(task)
        task.add_done_callback(sending.discard)
    await asyncio.gather(*sending)


async def latencies(runner_class: type[Runner], context: BenchContext, per_second: float, count: int) -> list[float]:
    """Milliseconds from enqueue to start of every job, under the steady load."""
    await context.reset()
    async with runner_class(context.redis_url, context.concurrency) as runner:
        async with WorkerProcess(runner.worker_argv(), context.log_path(f"latency {runner.name}")) as worker:
            await worker.wait_ready(context.redis)
            # The harness's own heap (every peer's modules, earlier runs' samples) is frozen, so
            # its collections cannot pause the sending: the latency is the system's, not ours.
            gc.freeze()
            await paced(runner, count, per_second)
            await _wait_finished(context, worker, count)
    records = [Finished.parse(entry) for entry in await context.redis.lrange(FINISHED, 0, -1)]
    return [(record.started_at - record.enqueued_at) * 1000 for record in records]


async def run(context: BenchContext) -> Section:
    conveyor = conveyor_runner()
    if conveyor is None:
        raise RuntimeError("the latency benchmark needs Conveyor's runner (bench/queue/conveyor.py)")
    peak = Spread.of(
        [(await measure(conveyor, context, Workload.NOOP)).processing_per_s for _ in range(context.repeat)]
    ).median
    offered = peak / 2
    count = max(1, round(offered * context.latency_seconds))
    context.progress(f"latency: Conveyor peaks at {peak:,.0f} jobs/s; offering {offered:,.0f} jobs/s")
    runners = [conveyor, *peer_runners(BASELINES)]
    samples: dict[str, list[list[float]]] = defaultdict(list)
    failures: dict[str, str] = {}
    for turn in range(context.repeat):
        for runner_class in round_robin(runners, turn):
            try:
                measured = await latencies(runner_class, context, offered, count)
            except (WorkerFailed, TimeoutError) as error:
                failures[runner_class.name] = str(error).splitlines()[0]
                continue
            samples[runner_class.name].append(measured)
            context.progress(
                f"latency {turn + 1}/{context.repeat} {runner_class.name}: p99 {percentile(measured, 99):.1f} ms"
            )
    table = Table(
        f"Enqueue → start latency, ms: {count:,} no-op jobs offered at {offered:,.0f}/s (half of Conveyor's "
        f"peak of {peak:,.0f}/s) over {context.latency_seconds:g} s, concurrency {context.concurrency}, "
        f"median (min–max) of {context.repeat}",
        ["System", *(f"p{percent}" for percent in PERCENTILES), "max"],
    )
    for runner_class in runners:
        runs = samples.get(runner_class.name)
        if not runs:
            table.rows.append([runner_class.name, f"failed: {failures.get(runner_class.name, '?')}", "", "", ""])
            continue
        cells = [Spread.of([percentile(run, percent) for run in runs]).format(milliseconds) for percent in PERCENTILES]
        table.rows.append([runner_class.name, *cells, Spread.of([max(run) for run in runs]).format(milliseconds)])
    return context.section(
        "latency",
        "Enqueue-to-start latency at half of peak",
        [table],
        [
            "Start is when the job function begins, recorded by the job itself; enqueue is when the client "
            "sent it. Peak is Conveyor's processing rate on the no-op workload in this run.",
            "Conveyor enqueues through the API's own path (ledger row, then arq); its idle worker blocks on "
            "the queue's wake-up list (BLPOP), which each such enqueue pushes to, and claims the due jobs "
            "of a batch in one script; tuned arq polls every 0.05 s; SAQ's workers wait on the queue with "
            "a blocking Redis call (BLMOVE).",
            *(runner.note for runner in runners if runner.note),
        ],
    )
