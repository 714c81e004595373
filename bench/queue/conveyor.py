"""Conveyor's full path, measured like the peers: ledger row, arq, status and result written back.

Each measurement gets a fresh PostgreSQL database (migrated to head) beside the harness's
Redis. Enqueueing is the API's own path minus HTTP (`service.api.submissions.record_job`, then
`hand_off` to arq); the worker is a real Conveyor worker (`pipelines.lifecycle.worker`) with
heartbeats and the reconciler at their production settings, running a one-stage `bench`
pipeline whose stage is `bench.queue.jobs.perform`.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from conveyor.kinds import Pipeline, Stage
from pipelines import lifecycle
from service import ledger, queue
from service.api.submissions import JobSpec as Submission
from service.api.submissions import hand_off, record_job
from service.config import Settings, load_settings
from service.databases.database import Database
from service.ledger.job_inserts import JobInserts
from service.queue.backlog import Backlog

from ..ledger_db import drop_database, migrated_database, tenant_with_key
from .jobs import perform
from .recorder import AsyncRecorder
from .runner import Runner, worker_parser
from .workload import JobSpec

MODULE = "bench.queue.conveyor"
KIND = "bench"
TENANT = "bench"
#: Longer than any crash-benchmark cap, so held jobs are never timed out by Conveyor itself.
PIPELINE_TIMEOUT_S = 900.0


def settings_for(database: str, redis_url: str, concurrency: int, storage_dir: str) -> Settings:
    """Production defaults except where the benchmark must say otherwise (it logs warnings only
    because the harness keeps worker output in files; one tenant enqueues everything, so its
    quota of queued jobs is lifted; the liveness settings are the defaults)."""
    return load_settings(
        database_url=database,
        redis_url=redis_url,
        storage_url=f"file://{storage_dir}",
        worker_max_jobs=concurrency,
        log_level="WARNING",
        tenant_max_queued_jobs=1_000_000,
    )


class ConveyorRunner(Runner):
    name = "Conveyor"
    note = (
        "Conveyor: full path (ledger row in PostgreSQL, arq, stage and status written back, events "
        "published), one worker process; liveness at production defaults: a crash watch every 0.25 s finds a "
        "worker dead once its PostgreSQL session and Redis connection are both gone (kill -9) or its heartbeat "
        "(every 2 s) is 6 s old (a cut-off host); the reconciler, every 2 s, is its backstop."
    )
    crash_benchmark = True
    milestone_names = ("ledger INSERT began", "ledger claim began")

    async def open(self) -> None:
        self._database, url = await migrated_database("conveyor_bench")
        self._storage = tempfile.TemporaryDirectory(prefix="conveyor-bench-storage-")
        self.settings = settings_for(url, self.redis_url, self.concurrency, self._storage.name)
        self.redis = queue.connect(self.redis_url)
        self.db = Database(self.settings, redis=self.redis)
        await self.db.open()
        self.backlog = Backlog(self.redis, self.db)
        self.enqueuer = queue.Enqueuer(self.redis)
        self.inserts = JobInserts(self.db)
        self.kind = bench_pipeline(None).spec(self.settings)  # its tries and queue; the worker runs it
        self.tenant_id, _ = await tenant_with_key(self.settings, TENANT)

    async def close(self) -> None:
        await self.db.close()
        await self.redis.aclose()
        await drop_database(self._database)
        self._storage.cleanup()

    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        submission = Submission(fingerprint="", payload={"args": job.args(enqueued_at)})
        created, backlog = await record_job(
            self.inserts,
            self.backlog,
            self.settings,
            self.tenant_id,
            ledger.new_job_id(),
            submission,
            kind=self.kind,
        )
        await hand_off(self.enqueuer, created, backlog=backlog)

    async def milestones(self) -> dict[float, tuple[float, ...]]:
        """The transactions' start times the ledger keeps (`created_at`, `started_at`)."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                """
                SELECT (payload->'args'->>1)::float8, extract(epoch FROM created_at)::float8,
                       extract(epoch FROM started_at)::float8
                FROM jobs WHERE kind = $1 AND started_at IS NOT NULL
                """,
                KIND,
            )
        return {enqueued: (created, started) for enqueued, created, started in rows}

    def worker_argv(self) -> list[str]:
        return [MODULE, self.redis_url, str(self.concurrency), self.settings.database_url, self._storage.name]


def bench_pipeline(recorder: AsyncRecorder | None) -> Pipeline:
    async def run(job, input) -> dict:
        await perform(recorder, *job.payload["args"])
        return {}

    return Pipeline(name=KIND, stages=(Stage("perform", run),), timeout=PIPELINE_TIMEOUT_S)


def run_worker(redis_url: str, concurrency: int, database: str, storage_dir: str) -> None:
    settings = settings_for(database, redis_url, concurrency, storage_dir)
    recorder = AsyncRecorder(redis_url)
    pipeline = bench_pipeline(recorder)
    startup, shutdown = lifecycle.hooks(settings, [pipeline])  # the reconciler minds the bench's kind

    async def ready(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        await recorder.ready()

    async def close(ctx: dict[str, Any]) -> None:
        await shutdown(ctx)
        await recorder.close()

    lifecycle.use_uvloop()  # as worker.py does
    worker = lifecycle.worker(settings, [pipeline], on_startup=ready, on_shutdown=close)
    worker.run()


def main(argv: list[str]) -> None:
    parser = worker_parser("A Conveyor worker running the bench pipeline.")
    parser.add_argument("database_url")
    parser.add_argument("storage_dir")
    args = parser.parse_args(argv)
    run_worker(args.redis_url, args.concurrency, args.database_url, args.storage_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
