"""The `Runner` protocol every queue system implements, and the registry that finds them.

A runner enqueues from the benchmark process and names the command that starts its worker as
a separate process; the benchmarks do the timing, so every system is measured the same way.
Conveyor's own runner plugs in as `bench/queue/conveyor.py` (class `ConveyorRunner`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Self, TypeVar

from .workload import JobSpec, Workload

#: Jobs an async client keeps in flight while enqueueing (SAQ's benchmark uses 20 too).
ENQUEUE_IN_FLIGHT = 20
T = TypeVar("T")


class Runner(ABC):
    """One queue system: a client in this process, a worker in another."""

    #: Label in the tables.
    name: ClassVar[str]
    #: Shown under the table when the system is configured or limited in a way readers must know.
    note: ClassVar[str] = ""
    #: Whether the crash-recovery benchmark measures this system.
    crash_benchmark: ClassVar[bool] = False
    #: What `milestones` reports of each job, in order, between its enqueue and its start.
    milestone_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, redis_url: str, concurrency: int) -> None:
        self.redis_url = redis_url
        self.concurrency = concurrency

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 (a hook: a runner without a client keeps it empty)
        """Connect the client."""

    async def close(self) -> None:  # noqa: B027 (a hook, as open)
        """Release the client."""

    async def milestones(self) -> dict[float, tuple[float, ...]]:
        """When each job enqueued so far passed `milestone_names` (wall-clock seconds), by its
        enqueue time, from the system's own records; call before `close`."""
        return {}

    def job_count(self, workload: Workload, requested: int) -> int:
        """How many jobs of `workload` this system runs; less than requested only when noted."""
        del workload
        return requested

    @abstractmethod
    def worker_argv(self) -> list[str]:
        """Arguments after `python -m` that start one worker with `self.concurrency`."""

    @abstractmethod
    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        """Enqueue one `bench_job` with `job.args(enqueued_at)`."""

    async def enqueue_all(self, jobs: Sequence[JobSpec]) -> None:
        """Enqueue through the client's ordinary one-job call, `ENQUEUE_IN_FLIGHT` at a time."""
        slots = asyncio.Semaphore(ENQUEUE_IN_FLIGHT)

        async def one(job: JobSpec) -> None:
            async with slots:
                await self.enqueue(job, time.time())

        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))


class SyncRunner(Runner):
    """A system whose client is blocking: it enqueues in a plain loop on a worker thread."""

    @abstractmethod
    def enqueue_sync(self, job: JobSpec, enqueued_at: float) -> None:
        """Enqueue one `bench_job`, blocking."""

    async def enqueue(self, job: JobSpec, enqueued_at: float) -> None:
        await asyncio.to_thread(self.enqueue_sync, job, enqueued_at)

    async def enqueue_all(self, jobs: Sequence[JobSpec]) -> None:
        def loop() -> None:
            for job in jobs:
                self.enqueue_sync(job, time.time())

        await asyncio.to_thread(loop)


def round_robin(systems: Sequence[T], turn: int) -> list[T]:
    """Each repetition starts with the next system, so none always runs first (or last)."""
    shift = turn % len(systems)
    return [*systems[shift:], *systems[:shift]]


def worker_parser(description: str) -> argparse.ArgumentParser:
    """The command line every worker entry point shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("redis_url")
    parser.add_argument("concurrency", type=int)
    return parser


PEERS: dict[str, str] = {
    "arq": "bench.queue.peers.arq_peer:ArqRunner",
    "arq-tuned": "bench.queue.peers.arq_peer:TunedArqRunner",
    "saq": "bench.queue.peers.saq_peer:SaqRunner",
    "streaq": "bench.queue.peers.streaq_peer:StreaqRunner",
    "celery": "bench.queue.peers.celery_peer:CeleryRunner",
    "rq": "bench.queue.peers.rq_peer:RqRunner",
}
CONVEYOR_MODULE = "bench.queue.conveyor"


def _load(path: str) -> type[Runner]:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def conveyor_runner() -> type[Runner] | None:
    """Conveyor's runner, or None until `bench/queue/conveyor.py` exists."""
    try:
        return _load(f"{CONVEYOR_MODULE}:ConveyorRunner")
    except ModuleNotFoundError as error:
        if error.name == CONVEYOR_MODULE:
            return None
        raise


def peer_runners(names: Sequence[str] | None = None) -> list[type[Runner]]:
    """The peers, in table order; `names` picks some of them (keys of `PEERS`)."""
    unknown = set(names or ()) - PEERS.keys()
    if unknown:
        raise ValueError(f"unknown peer(s) {sorted(unknown)}; choose from {sorted(PEERS)}")
    return [_load(path) for key, path in PEERS.items() if not names or key in names]
