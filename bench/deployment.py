"""Conveyor as deployed, for benchmarks whose jobs go in through the HTTP API.

A fresh database migrated to head (with a tenant and its API key), the run's Redis,
`file://` storage, the API under uvicorn with one process a core (`bench.api.ApiProcess`),
and one worker process started as production starts it, `python -m arq
worker.WorkerSettings`, with `CONVEYOR_KINDS` naming the module of the kinds it runs. It is
ready once the API lists those kinds (the worker publishes them when it starts). What
happened to the jobs is read from the ledger, the record of it: each job's `created_at`
(its INSERT), `started_at` (its claim) and `finished_at`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Self

import asyncpg
import httpx

from service.config import load_settings

from .api import ApiProcess, service_env
from .context import BenchContext
from .ledger_db import drop_database, migrated_database, tenant_with_key
from .queue.process import READY_TIMEOUT_S, WorkerProcess

#: The API as deployed: one uvicorn process a core.
API_PROCESSES = os.cpu_count() or 1
WORKER = ["arq", "worker.WorkerSettings"]
#: The ledger is read this often while waiting: rarely enough to cost the measured system
#: little (the times measured come from the rows, not from when the wait saw them).
LEDGER_POLL_S = 0.2
ENDED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Ran:
    """One job's times in the ledger, seconds since the epoch, and its concurrency key."""

    created_at: float
    started_at: float
    finished_at: float
    concurrency_key: str | None


class Deployment:
    def __init__(self, context: BenchContext, label: str, kinds_module: str, kinds: Sequence[str]) -> None:
        self.context = context
        self.label = label
        self.kinds_module = kinds_module
        self.kinds = kinds
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        context = self.context
        await context.reset()
        name, url = await migrated_database("conveyor_bench_jobs")
        self._stack.push_async_callback(drop_database, name)
        storage = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-bench-jobs-"))
        _, self.key = await tenant_with_key(load_settings(database_url=url, redis_url=context.redis_url), "bench")
        env = {
            **service_env(url, context.redis_url, storage),
            "CONVEYOR_KINDS": self.kinds_module,
            "WORKER_MAX_JOBS": str(context.concurrency),
        }
        self.api = await self._stack.enter_async_context(
            ApiProcess(API_PROCESSES, env, context.log_path(f"{self.label} api"))
        )
        self.worker = await self._stack.enter_async_context(
            WorkerProcess(WORKER, context.log_path(f"{self.label} worker"), env)
        )
        self.ledger = await asyncpg.connect(url)
        self._stack.push_async_callback(self.ledger.close)
        await self._wait_kinds()

    async def _wait_kinds(self) -> None:
        """Until the API takes jobs of every kind (the worker has started and published them)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.api.url, headers=headers) as http:
            while True:
                listed = {kind["kind"] for kind in (await http.get("/v1/kinds")).json()["items"]}
                if set(self.kinds) <= listed:
                    return
                self.worker.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the worker did not publish {', '.join(self.kinds)} within {READY_TIMEOUT_S:.0f} s"
                    )
                await asyncio.sleep(LEDGER_POLL_S)

    async def wait_ended(self, count: int, timeout: float) -> None:
        """Until `count` jobs have ended, every one of them successfully."""
        deadline = time.monotonic() + timeout
        while True:
            ended, unsuccessful = await self.ledger.fetchrow(
                "SELECT count(*) FILTER (WHERE status = ANY($1::text[])), "
                "count(*) FILTER (WHERE status = ANY($1::text[]) AND status <> 'succeeded') FROM jobs",
                list(ENDED),
            )
            if unsuccessful:
                raise RuntimeError(f"{unsuccessful} jobs did not succeed (see {self.worker.log_path})")
            if ended >= count:
                return
            self.worker.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ended}/{count} jobs ended after {timeout:.0f} s")
            await asyncio.sleep(LEDGER_POLL_S)

    async def ran(self) -> list[Ran]:
        rows = await self.ledger.fetch(
            "SELECT extract(epoch FROM created_at)::float8, extract(epoch FROM started_at)::float8, "
            "extract(epoch FROM finished_at)::float8, concurrency_key FROM jobs WHERE finished_at IS NOT NULL"
        )
        return [Ran(*row) for row in rows]


def most_at_once(ran: Sequence[Ran]) -> int:
    """The most jobs of one concurrency key that ran at the same time, by their ledger times
    (a job that ended as another started does not overlap it); 0 without keys."""
    by_key: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for job in ran:
        if job.concurrency_key is not None:
            by_key[job.concurrency_key] += [(job.started_at, 1), (job.finished_at, -1)]
    most = 0
    for edges in by_key.values():
        running = 0
        for _, change in sorted(edges):
            running += change
            most = max(most, running)
    return most
