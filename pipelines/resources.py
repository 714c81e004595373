"""What a worker process holds for all its jobs: pools, clients, and its running jobs."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from arq.connections import ArqRedis

from pipelines.ledger_writes import LedgerWrites
from pipelines.parking import Parking
from service.config import Settings
from service.databases.database import Database
from service.jobs import Kinds
from service.queue.concurrency import Lines
from service.queue.events import Publisher
from service.ratelimit import RateLimiter
from service.storage import Storage
from service.telemetry.monitoring import FinishedCounter

if TYPE_CHECKING:
    from conveyor.kinds import Pipeline


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Resources:
    settings: Settings
    db: Database
    redis: ArqRedis
    storage: Storage
    http: httpx.AsyncClient  # for providers we chose (Twilio, FCM, OneSignal, S3-compatible…)
    webhooks: httpx.AsyncClient  # for user-supplied URLs: SSRF-guarded, no redirects
    limiter: RateLimiter  # per-channel send rates shared by every worker
    kinds: Kinds  # every kind's tries, timeout and queue, for the jobs this worker creates
    shared: dict[str, Any] = field(default_factory=dict)  # what each kind's jobs share, by kind
    worker_id: str = field(default_factory=new_worker_id)
    running: dict[str, asyncio.Task] = field(default_factory=dict)
    cancelling: set[str] = field(default_factory=set)

    @functools.cached_property
    def ledger(self) -> LedgerWrites:
        """The runner's claim, stage and ending writes, combined across this worker's jobs."""
        return LedgerWrites(self.db, self.worker_id)

    @functools.cached_property
    def parking(self) -> Parking:
        """This worker's running jobs, parked out of arq's poll window."""
        return Parking(self.redis, self.settings.queue_name, after=self.settings.worker_park_after)

    @functools.cached_property
    def lines(self) -> Lines:
        """The lines of jobs waiting for a place under their concurrency key."""
        return Lines(self.redis, self.settings.queue_name)

    @functools.cached_property
    def events(self) -> Publisher:
        """Job events, combined across this worker's jobs into shared Redis round trips."""
        return Publisher(self.redis)

    @functools.cached_property
    def finished(self) -> FinishedCounter:
        """The dashboard's count of ended jobs, combined across this worker's jobs."""
        return FinishedCounter(self.redis)

    def open_shared(self, pipeline: Pipeline) -> Any:
        """What the jobs of `pipeline`'s kind share in this process (its `shared`), made once:
        at start for the kinds the worker runs, else when first asked."""
        if pipeline.name not in self.shared and pipeline.shared is not None:
            self.shared[pipeline.name] = pipeline.shared(self.settings, self.redis)
        return self.shared.get(pipeline.name)

    async def close_shared(self) -> None:
        for value in self.shared.values():
            if hasattr(value, "aclose"):
                await value.aclose()
        self.shared.clear()

    def cancel(self, job_id: str) -> bool:
        """Stop a running job at the user's request; False if it does not run here."""
        task = self.running.get(job_id)
        if task is None or task.done():
            return False
        self.cancelling.add(job_id)
        task.cancel()
        return True
