"""Where jobs report what happened, in the benchmark's own Redis keys.

Finished jobs push "enqueued started finished" (wall-clock seconds) onto one list; held jobs
write their start time into a hash per worker pid, which is how the crash benchmark tells
worker A's runs from worker B's. Workers mark themselves ready once their framework has started.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aredis

FINISHED = "bench:finished"


def started_key(pid: int) -> str:
    return f"bench:started:{pid}"


def ready_key(pid: int) -> str:
    return f"bench:ready:{pid}"


def _finished_entry(enqueued_at: float, started_at: float) -> str:
    return f"{enqueued_at} {started_at} {time.time()}"


@dataclass(frozen=True, slots=True)
class Finished:
    enqueued_at: float
    started_at: float
    finished_at: float

    @classmethod
    def parse(cls, entry: bytes) -> Finished:
        enqueued, started, finished = (float(part) for part in entry.split())
        return cls(enqueued, started, finished)


class AsyncRecorder:
    """Used inside asyncio workers (arq, SAQ, streaq, Conveyor)."""

    def __init__(self, redis_url: str) -> None:
        self.redis = aredis.Redis.from_url(redis_url)
        self.pid = os.getpid()

    async def ready(self) -> None:
        await self.redis.set(ready_key(self.pid), time.time())

    async def started(self, index: int) -> None:
        await self.redis.hset(started_key(self.pid), str(index), time.time())

    async def finished(self, enqueued_at: float, started_at: float) -> None:
        await self.redis.rpush(FINISHED, _finished_entry(enqueued_at, started_at))

    async def close(self) -> None:
        await self.redis.aclose()


class SyncRecorder:
    """Used inside thread- or process-based workers (Celery, RQ); safe across threads."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.pid = os.getpid()

    def ready(self) -> None:
        self.redis.set(ready_key(self.pid), time.time())

    def finished(self, enqueued_at: float, started_at: float) -> None:
        self.redis.rpush(FINISHED, _finished_entry(enqueued_at, started_at))
