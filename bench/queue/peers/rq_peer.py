"""RQ 2.12 with `SimpleWorker`: one job at a time in the worker process, by design."""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue, SimpleWorker, get_current_job

from ..jobs import perform_sync
from ..recorder import SyncRecorder
from ..runner import SyncRunner, worker_parser
from ..workload import JobSpec, Workload

MODULE = "bench.queue.peers.rq_peer"
QUEUE = "bench"
#: RQ runs sleeping jobs one after another: a tenth of them still shows its rate.
SLEEP_FRACTION = 10


def bench_job(index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
    perform_sync(SyncRecorder(get_current_job().connection), index, enqueued_at, sleep_s, hold)


class RqRunner(SyncRunner):
    name = "RQ (SimpleWorker)"
    note = (
        f"RQ: no concurrency (one job at a time by design); runs 1/{SLEEP_FRACTION} of the sleeping jobs; "
        "blocking client, enqueues one job at a time."
    )

    async def open(self) -> None:
        self.connection = Redis.from_url(self.redis_url)
        self.queue = Queue(QUEUE, connection=self.connection)

    async def close(self) -> None:
        self.connection.close()

    def job_count(self, workload: Workload, requested: int) -> int:
        return max(1, requested // SLEEP_FRACTION) if workload is Workload.SLEEP else requested

    def enqueue_sync(self, job: JobSpec, enqueued_at: float) -> None:
        self.queue.enqueue(bench_job, *job.args(enqueued_at))

    def worker_argv(self) -> list[str]:
        return [MODULE, self.redis_url, str(self.concurrency)]


def main(argv: list[str]) -> None:
    args = worker_parser("An RQ SimpleWorker running bench_job (concurrency is ignored).").parse_args(argv)
    connection = Redis.from_url(args.redis_url)
    worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
    SyncRecorder(connection).ready()
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main(sys.argv[1:])
