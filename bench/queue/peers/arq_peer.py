"""arq 0.28 as shipped (polls every 0.5 s) and tuned (polls every 0.05 s)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func

from ..jobs import perform
from ..recorder import AsyncRecorder
from ..runner import Runner, worker_parser
from ..workload import JobSpec

MODULE = "bench.queue.peers.arq_peer"


async def bench_job(ctx: dict[str, Any], index: int, enqueued_at: float, sleep_s: float, hold: bool) -> None:
    await perform(ctx["recorder"], index, enqueued_at, sleep_s, hold)


class ArqRunner(Runner):
    name = "arq (default)"
    note = (
        "arq (default) polls every 0.5 s; a crashed job runs again only when its in-progress key "
        "expires (job timeout 300 s + 10 s)."
    )
    crash_benchmark = True
    #: None keeps arq's own default (0.5 s).
    poll_delay: ClassVar[float | None] = None

    async def open(self) -> None:
        self.pool: ArqRedis = await create_pool(RedisSettings.from_dsn(self.redis_url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        await self.pool.enqueue_job("bench_job", *job.args(enqueued_at))

    def worker_argv(self) -> list[str]:
        tuning = [] if self.poll_delay is None else ["--poll-delay", str(self.poll_delay)]
        return [MODULE, self.redis_url, str(self.concurrency), *tuning]


class TunedArqRunner(ArqRunner):
    name = "arq (tuned)"
    note = "arq (tuned): poll_delay 0.05 s, otherwise defaults."
    crash_benchmark = False  # recovers exactly like the default: the 310 s key expiry
    poll_delay = 0.05


def main(argv: list[str]) -> None:
    parser = worker_parser("An arq worker running bench_job.")
    parser.add_argument("--poll-delay", type=float)
    args = parser.parse_args(argv)
    recorder = AsyncRecorder(args.redis_url)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["recorder"] = recorder
        await recorder.ready()

    async def shutdown(ctx: dict[str, Any]) -> None:
        await recorder.close()

    tuning = {} if args.poll_delay is None else {"poll_delay": args.poll_delay}
    Worker(
        functions=[func(bench_job, name="bench_job")],
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        max_jobs=args.concurrency,
        on_startup=startup,
        on_shutdown=shutdown,
        **tuning,
    ).run()


if __name__ == "__main__":
    main(sys.argv[1:])
