"""Crash recovery of a cut-off host: a worker holding jobs loses its network; how long until all
of them run on another worker.

Worker A runs in a network namespace joined to this host by a veth pair, and reaches a Redis and
a PostgreSQL of this measurement's own over it; worker B runs on loopback. Once A holds every job
and B is ready, A's link goes down: no connection closes, so only A's silence can tell (its
heartbeat expires after WORKER_DEAD_AFTER_SECONDS). The result is the time from the cut to the
last job's start under B's pid. Conveyor only: a peer's answer to silence is its kill -9 answer.
Needs root (`ip netns`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aredis

from testkit import postgres
from testkit.net import free_port
from testkit.netns import NetNamespace, netns_permitted
from testkit.pg_cluster import PgCluster
from testkit.redis_server import RedisServer

from ..context import BenchContext
from .process import WorkerProcess
from .recovery import TAKE_TIMEOUT_S, Sample, recovery, wait_started
from .runner import Runner
from .workload import Workload, jobs


def unavailable() -> str | None:
    """None if a host can be cut off here, else why not."""
    return "the ip command is missing" if shutil.which("ip") is None else netns_permitted()


@contextmanager
def _cut_off_host() -> Iterator[tuple[NetNamespace, str]]:
    """A namespace, and the URL of a Redis that (with a PostgreSQL for `postgres`'s databases)
    listens on loopback and on the namespace's link."""
    space = NetNamespace().create()
    cluster = PgCluster(free_port(), listen=("127.0.0.1", space.host_address), trust=(space.cidr,)).init()
    try:
        with RedisServer(bind=("127.0.0.1", space.host_address)) as redis_server:
            cluster.start()
            with postgres.serving(cluster.url()):
                yield space, redis_server.url
    finally:
        cluster.destroy()
        space.delete()


async def measure(runner_class: type[Runner], context: BenchContext) -> Sample:
    count = context.crash_jobs
    with _cut_off_host() as (space, redis_url):
        redis = aredis.Redis.from_url(redis_url)
        try:
            async with runner_class(redis_url, context.concurrency) as runner:
                argv = runner.worker_argv()
                remote = [arg.replace("127.0.0.1", space.host_address) for arg in argv]
                log = context.log_path(f"{runner.name} partition A")
                async with WorkerProcess(remote, log, netns=space.name) as first:
                    await first.wait_ready(redis)
                    await runner.enqueue_all(jobs(Workload.HOLD, count))
                    if await wait_started(redis, first, count, TAKE_TIMEOUT_S) < count:
                        raise TimeoutError(f"worker A did not start all {count} jobs within {TAKE_TIMEOUT_S:.0f} s")
                    async with WorkerProcess(argv, context.log_path(f"{runner.name} partition B")) as second:
                        await second.wait_ready(redis)
                        space.cut()
                        sample = await recovery(redis, second, count, time.time(), context.crash_cap_s)
                        first.kill()  # cut off, it could not say goodbye anyway
                        return sample
        finally:
            await redis.aclose()
