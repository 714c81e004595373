"""Celery 5.6 on the same Redis, threads pool with the benchmark's concurrency, otherwise defaults."""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_ready
from redis import Redis

from ..jobs import perform_sync
from ..recorder import SyncRecorder
from ..runner import SyncRunner, worker_parser
from ..workload import JobSpec

MODULE = "bench.queue.peers.celery_peer"
TASK = "bench_job"


def make_app(redis_url: str) -> Celery:
    return Celery("bench", broker=redis_url)


class CeleryRunner(SyncRunner):
    name = "Celery (threads)"
    note = "Celery: blocking client, enqueues one job at a time; jobs sleep with time.sleep in the pool's threads."

    async def open(self) -> None:
        self.app = make_app(self.redis_url)

    async def close(self) -> None:
        self.app.close()

    def enqueue_sync(self, job: JobSpec, enqueued_at: float) -> None:
        self.app.send_task(TASK, args=job.args(enqueued_at))

    def worker_argv(self) -> list[str]:
        return [MODULE, self.redis_url, str(self.concurrency)]


def main(argv: list[str]) -> None:
    args = worker_parser("A Celery worker (threads pool) running bench_job.").parse_args(argv)
    app = make_app(args.redis_url)
    recorder = SyncRecorder(Redis.from_url(args.redis_url))

    @app.task(name=TASK)
    def bench_job(index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
        perform_sync(recorder, index, enqueued_at, sleep_s, hold)

    worker_ready.connect(lambda **_: recorder.ready(), weak=False)
    app.worker_main(["worker", "--pool", "threads", "--concurrency", str(args.concurrency), "--loglevel", "WARNING"])


if __name__ == "__main__":
    main(sys.argv[1:])
