"""streaQ 7.2 with its defaults (a worker's unacknowledged tasks are reclaimed after 60 s idle)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streaq import Worker

from ..jobs import perform
from ..recorder import AsyncRecorder
from ..runner import Runner, worker_parser
from ..workload import JobSpec

MODULE = "bench.queue.peers.streaq_peer"


def build(redis_url: str, concurrency: int) -> tuple[Worker[AsyncRecorder], Any]:
    """The worker and its registered `bench_job`; the client side uses the same pair to enqueue."""

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[AsyncRecorder]:
        recorder = AsyncRecorder(redis_url)
        await recorder.ready()
        try:
            yield recorder
        finally:
            await recorder.close()

    worker: Worker[AsyncRecorder] = Worker(redis_url=redis_url, concurrency=concurrency, lifespan=lifespan)

    @worker.task(name="bench_job")
    async def bench_job(index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
        await perform(worker.context, index, enqueued_at, sleep_s, hold)

    return worker, bench_job


class StreaqRunner(Runner):
    name = "streaQ"
    crash_benchmark = True

    async def open(self) -> None:
        self.client, self.task = build(self.redis_url, self.concurrency)
        await self.client.__aenter__()

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        await self.task.enqueue(*job.args(enqueued_at))

    def worker_argv(self) -> list[str]:
        return [MODULE, self.redis_url, str(self.concurrency)]


def main(argv: list[str]) -> None:
    args = worker_parser("A streaQ worker running bench_job.").parse_args(argv)
    worker, _ = build(args.redis_url, args.concurrency)
    worker.run_sync()


if __name__ == "__main__":
    main(sys.argv[1:])
