"""SAQ 0.26 with its defaults; held jobs opt in to SAQ's crash recovery.

With SAQ's defaults (timeout 10 s, no heartbeat, 1 attempt) a job whose worker dies is swept
as aborted and never runs again. Held jobs are therefore enqueued the way SAQ documents for
long jobs: no timeout, a 10 s heartbeat (beaten every second) and 2 attempts; the sweep runs
every 60 s (SAQ's default timer).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from saq import Queue, Worker

from ..jobs import perform
from ..recorder import AsyncRecorder
from ..runner import Runner, worker_parser
from ..workload import JobSpec

MODULE = "bench.queue.peers.saq_peer"
HELD_JOB_OPTIONS = {"timeout": 0, "heartbeat": 10, "retries": 2}


async def bench_job(ctx: dict[str, Any], *, index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
    await perform(ctx["recorder"], index, enqueued_at, sleep_s, hold, heartbeat=ctx["job"].update)


class SaqRunner(Runner):
    name = "SAQ"
    note = (
        "SAQ: held jobs use timeout 0, heartbeat 10 s, 2 attempts (defaults never re-run a crashed job); "
        "its 60 s sweep waits up to 5 s per stuck job, one after another."
    )
    crash_benchmark = True

    async def open(self) -> None:
        self.queue = Queue.from_url(self.redis_url)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        index, enqueued_at, sleep_s, hold = job.args(enqueued_at)
        options = HELD_JOB_OPTIONS if hold else {}
        await self.queue.enqueue(
            "bench_job", index=index, enqueued_at=enqueued_at, sleep_s=sleep_s, hold=hold, **options
        )

    def worker_argv(self) -> list[str]:
        return [MODULE, self.redis_url, str(self.concurrency)]


async def run_worker(redis_url: str, concurrency: int) -> None:
    recorder = AsyncRecorder(redis_url)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["recorder"] = recorder
        await recorder.ready()

    worker = Worker(
        queue=Queue.from_url(redis_url),
        functions=[("bench_job", bench_job)],
        concurrency=concurrency,
        startup=startup,
    )
    await worker.start()


def main(argv: list[str]) -> None:
    args = worker_parser("A SAQ worker running bench_job.").parse_args(argv)
    asyncio.run(run_worker(args.redis_url, args.concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
