"""The API and workers, for real: uvicorn on a free port, arq workers in-process."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx
import uvicorn
from arq.worker import Worker

from conveyor.kinds import Pipeline
from pipelines import lifecycle
from pipelines.dispatch import Dispatcher
from service import ledger
from service.app import create_app
from service.config import Settings, load_settings
from service.databases.database import Database
from service.ledger.tenants import create_api_key, ensure_tenant

from .net import free_port

ADMIN_KEY = "admin-key-for-tests-0123456789abcdef"  # ADMIN_KEY needs 32 characters or more


def make_settings(database_url: str, redis_url: str, storage_dir: Path, **overrides) -> Settings:
    values = {
        "database_url": database_url,
        "redis_url": redis_url,
        "storage_url": f"file://{storage_dir}",
        "log_json": False,
        "log_level": "WARNING",
        "reconcile_after_seconds": 1.0,
        "worker_heartbeat_seconds": 0.5,
        "worker_dead_after_seconds": 2.0,
        "worker_shutdown_grace": 0.0,  # a test's worker hands its jobs back at once when it closes
        **overrides,
    }
    return load_settings(**values)


class ApiServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ApiServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        await self.task


def make_worker(settings: Settings, pipelines: Iterable[Pipeline], **overrides) -> Worker:
    return lifecycle.worker(settings, pipelines, **overrides)


class InProcessWorker:
    """An arq worker in this event loop; `crash()` stops it the way kill -9 would look
    from outside: no clean shutdown, its heartbeat left to expire, its arq keys left."""

    def __init__(self, settings: Settings, pipelines: Iterable[Pipeline], **overrides) -> None:
        self.worker = make_worker(settings, pipelines, **overrides)
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> InProcessWorker:
        self.task = asyncio.create_task(self.worker.async_run())
        return self

    @property
    def dispatcher(self) -> Dispatcher:
        return self.worker.ctx["dispatcher"]

    async def __aexit__(self, *exc) -> None:
        await self._stop()
        await self.worker.close()

    async def _stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def crash(self) -> None:
        """Also stops its running jobs where they are, as a dead process would."""
        for background in self.worker.ctx.get("background", ()):
            background.cancel()
        self.worker.ctx.pop("resources", None)  # so shutdown cannot say goodbye
        await self._stop()
        dispatcher = self.worker.ctx.pop("dispatcher", None)  # nor hand its jobs back
        if dispatcher is None:
            return
        dispatcher.claimer.cancel()
        jobs = [dispatcher.claimer, *dispatcher.tasks]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


def running_worker(settings: Settings, pipelines: Iterable[Pipeline], **overrides) -> InProcessWorker:
    return InProcessWorker(settings, pipelines, **overrides)


async def publish_kinds(settings: Settings, *kinds: ledger.KindDescription, by: str = "test-worker") -> None:
    """Publish kinds as a starting worker does (the API accepts jobs of published kinds)."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            await ledger.publish(conn, kinds, by)
    finally:
        await db.close()


async def new_tenant(settings: Settings, name: str | None = None) -> tuple[uuid.UUID, str]:
    """A tenant and a fresh API key for it."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            tenant = await ensure_tenant(conn, name or f"tenant-{uuid.uuid4().hex[:8]}")
            key = await create_api_key(conn, tenant)
    finally:
        await db.close()
    return tenant.id, key


def client(base_url: str, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)


async def until(predicate, timeout: float = 10.0):
    """Call `predicate()` (awaiting it if it is async) again and again until it is truthy, which
    is returned; fail the test after `timeout` s. Tests wait on this, not on fixed sleeps."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await _value(predicate())):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return result


async def _value(result):
    return await result if inspect.isawaitable(result) else result


async def wait_for_job(
    http: httpx.AsyncClient, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 60.0
) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await http.get(f"/v1/jobs/{job_id}")
        body = response.json()
        if body.get("status") in statuses:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still {body.get('status')} after {timeout}s: {body}")
        await asyncio.sleep(0.1)
