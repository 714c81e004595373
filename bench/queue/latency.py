"""Enqueue-to-start latency at half of Conveyor's peak: `python -m bench latency`.

Peak is measured first, in the same run: Conveyor's processing jobs/s on the no-op workload
(as in the queue benchmark). Then each system gets the same steady load, half that peak, from
an open-loop enqueuer (job i is sent at t0 + i / rate whatever the answers before it did), for
a fixed duration, and every job records when it started. Baselines: tuned arq and SAQ.

Two more tables say why: the CPU each process spent per job (the same load costs the cores
more for a system that does more per job, and a busier machine has longer tails), and, for
a system that keeps its own times (Conveyor's ledger), how long each hop on the way took.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from testkit import postgres

from .. import cpu
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


@dataclass(frozen=True, slots=True)
class Measured:
    """One system's run: each job's enqueue-to-start (ms), each process's CPU per job (ms),
    and each hop's time (ms) for every job, where the system keeps milestones."""

    latencies: list[float]
    cpu_per_job: dict[str, float]
    hops: dict[str, list[float]]


async def latencies(runner_class: type[Runner], context: BenchContext, per_second: float, count: int) -> Measured:
    """Every job's enqueue-to-start under the steady load, and what it cost."""
    await context.reset()
    async with runner_class(context.redis_url, context.concurrency) as runner:
        async with WorkerProcess(runner.worker_argv(), context.log_path(f"latency {runner.name}")) as worker:
            await worker.wait_ready(context.redis)
            processes = {
                "client": psutil.Process(),
                "worker": psutil.Process(worker.pid),
                "Redis": cpu.listening_on(urlsplit(context.redis_url).port or 6379),
                "PostgreSQL": await cpu.postmaster(postgres.admin_url()),
            }
            # The harness's own heap (every peer's modules, earlier runs' samples) is frozen, so
            # its collections cannot pause the sending: the latency is the system's, not ours.
            gc.freeze()
            before = cpu.by_process(processes)
            await paced(runner, count, per_second)
            await _wait_finished(context, worker, count)
            after = cpu.by_process(processes)
        milestones = await runner.milestones()
    records = [Finished.parse(entry) for entry in await context.redis.lrange(FINISHED, 0, -1)]
    return Measured(
        [(record.started_at - record.enqueued_at) * 1000 for record in records],
        {name: (after[name] - before[name]) * 1000 / count for name in after},
        hops(runner_class, records, milestones),
    )


def hops(
    runner_class: type[Runner], records: list[Finished], milestones: dict[float, tuple[float, ...]]
) -> dict[str, list[float]]:
    """Milliseconds between each pair of a job's consecutive moments: its enqueue, the
    runner's milestones, its start."""
    if not runner_class.milestone_names:
        return {}
    names = ["enqueue", *runner_class.milestone_names, "start"]
    spans: dict[str, list[float]] = {f"{a} → {b}": [] for a, b in itertools.pairwise(names)}
    for record in records:
        passed = milestones.get(record.enqueued_at)
        if passed is None:
            continue
        moments = [record.enqueued_at, *passed, record.started_at]
        for span, (a, b) in zip(spans.values(), itertools.pairwise(moments), strict=True):
            span.append((b - a) * 1000)
    return spans


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
    samples: dict[str, list[Measured]] = defaultdict(list)
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
                f"latency {turn + 1}/{context.repeat} {runner_class.name}: "
                f"p99 {percentile(measured.latencies, 99):.1f} ms, "
                f"CPU {sum(value for value in measured.cpu_per_job.values() if not math.isnan(value)):.2f} ms a job"
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
        cells = [
            Spread.of([percentile(run.latencies, percent) for run in runs]).format(milliseconds)
            for percent in PERCENTILES
        ]
        table.rows.append(
            [runner_class.name, *cells, Spread.of([max(run.latencies) for run in runs]).format(milliseconds)]
        )
    return context.section(
        "latency",
        "Enqueue-to-start latency at half of peak",
        [table, cpu_table(runners, samples), *hop_tables(runners, samples)],
        [
            "Start is when the job function begins, recorded by the job itself; enqueue is when the client "
            "sent it. Peak is Conveyor's processing rate on the no-op workload in this run.",
            "CPU per job: each process's user and system seconds over the run (after the worker was ready), "
            "divided by the jobs; the client is the benchmark process, which paces and enqueues; PostgreSQL is "
            "its server's processes, backends that ended included (only Conveyor uses it). Hops: from Conveyor's ledger, where `created_at` "
            "and `started_at` are the start times of the INSERT's and the claim's transactions.",
            "Conveyor enqueues through the API's own path (ledger row, then arq); its idle worker blocks on "
            "the queue's wake-up list (BLPOP), which each such enqueue pushes to, and claims the due jobs "
            "of a batch in one script; tuned arq polls every 0.05 s; SAQ's workers wait on the queue with "
            "a blocking Redis call (BLMOVE).",
            *(runner.note for runner in runners if runner.note),
        ],
    )


CPU_COLUMNS = ("client", "worker", "Redis", "PostgreSQL")


def cpu_table(runners: list[type[Runner]], samples: dict[str, list[Measured]]) -> Table:
    table = Table(
        "CPU per job, ms, by process: median of the runs",
        ["System", *CPU_COLUMNS, "total"],
    )
    for runner_class in runners:
        runs = samples.get(runner_class.name)
        if not runs:
            continue
        cells = [Spread.of([run.cpu_per_job[name] for run in runs]).median for name in CPU_COLUMNS]
        known = [cell for cell in cells if not math.isnan(cell)]
        table.rows.append(
            [runner_class.name, *("—" if math.isnan(cell) else f"{cell:.2f}" for cell in cells), f"{sum(known):.2f}"]
        )
    return table


def hop_tables(runners: list[type[Runner]], samples: dict[str, list[Measured]]) -> list[Table]:
    tables = []
    for runner_class in runners:
        runs = [run for run in samples.get(runner_class.name, []) if run.hops and all(run.hops.values())]
        if not runs:
            continue
        table = Table(f"{runner_class.name}'s way from enqueue to start, ms: median of the runs", ["Hop", "p50", "p99"])
        for hop in runs[0].hops:
            table.rows.append(
                [
                    hop,
                    *(
                        Spread.of([percentile(run.hops[hop], percent) for run in runs]).format(milliseconds)
                        for percent in (50, 99)
                    ),
                ]
            )
        tables.append(table)
    return tables
