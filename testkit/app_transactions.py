"""What the tests of conveyor_enqueue in an app's transaction share: worker processes that
hear of jobs only through LISTEN/NOTIFY (they reconcile only hour-old jobs), a tenant, a
stage counter, and the app's own `bookings` table and connection."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from pipelines import registry
from service.config import Settings

from . import sample_kinds
from .chaos import wait_until_ended
from .processes import WorkerProcess, settings_env
from .service import make_settings, new_tenant, publish_kinds, until
from .stage_counter import StageCounter

LISTENER = "conveyor-listener"  # the application_name of the workers' listening connections
NOT_RECONCILED = 3600.0
KINDS = "testkit.sample_kinds"


def worker_settings(database_url: str, redis_url: str, storage_dir, **overrides) -> Settings:
    values = {
        "queue_name": f"conveyor-test-{os.urandom(4).hex()}",
        "callback_allowed_hosts": ["127.0.0.0/8"],
        "reconcile_after_seconds": NOT_RECONCILED,
        **overrides,
    }
    return make_settings(database_url, redis_url, storage_dir, **values)


async def publish_sample_kinds(settings: Settings) -> None:
    """The `kinds` rows the workers publish at start (written here until they do): the app's
    `sync_account`, and the document kind, created by an upload."""
    document = next(kind for kind in registry.BUILT_IN if kind.name == "document").describe(settings)
    await publish_kinds(settings, sample_kinds.sync.describe(settings), document)


async def listener_pids(database_url: str) -> set[int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()", LISTENER
        )
    finally:
        await conn.close()
    return {row["pid"] for row in rows}


class Workers:
    """Worker processes as deployed (`arq worker.WorkerSettings`), sharing one queue."""

    def __init__(self, settings: Settings, log_dir, count: int) -> None:
        env = settings_env(settings, conveyor_kinds=KINDS)
        self.settings = settings
        self.processes = [
            WorkerProcess(env, log_dir / f"worker-{n}.log", settings_path="worker.WorkerSettings") for n in range(count)
        ]

    async def __aenter__(self) -> Workers:
        before = await listener_pids(self.settings.database_url)
        for process in self.processes:
            process.start()
        await until(
            lambda: self._listening(before, len(self.processes)), timeout=60
        )  # a job committed from now on is heard
        return self

    async def _listening(self, before: set[int], count: int) -> bool:
        assert all(process.alive for process in self.processes), self.logs()
        return len(await listener_pids(self.settings.database_url) - before) >= count

    async def __aexit__(self, *exc) -> None:
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"== {process.log_path.name}\n{process.log()[-3000:]}" for process in self.processes)


@pytest.fixture(scope="module")
def app_settings(database_url, redis_server, tmp_path_factory):
    return worker_settings(database_url, redis_server.url, tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
async def acme(app_settings) -> tuple[uuid.UUID, str]:
    """A tenant, by the name an app passes to conveyor_enqueue."""
    name = f"acme-{uuid.uuid4().hex[:8]}"
    tenant_id, _ = await new_tenant(app_settings, name)
    return tenant_id, name


@pytest.fixture(scope="module")
def counter():
    server = StageCounter().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def workers(app_settings, acme, tmp_path_factory):
    await publish_sample_kinds(app_settings)
    async with Workers(app_settings, tmp_path_factory.mktemp("workers"), count=2) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
async def bookings(app_settings):
    """The app's own table, beside the ledger."""
    conn = await asyncpg.connect(app_settings.database_url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bookings (id serial PRIMARY KEY, guest text NOT NULL)")
    finally:
        await conn.close()


@pytest.fixture
async def app_conn(app_settings):
    """The app's own connection to the same database."""
    conn = await asyncpg.connect(app_settings.database_url)
    yield conn
    await conn.close()


def sync(counter: StageCounter, account: str) -> dict:
    """A `sync_account` job's input: its stages report to `counter`."""
    return {"account": account, "counter_url": counter.url}


def ran_once(counter: StageCounter, job_id: uuid.UUID) -> bool:
    """Each of the job's two stages ran, and neither ran again."""
    return [report.stage for report in counter.for_job(str(job_id))] == ["fetch", "load"]


async def ended(settings: Settings, job_id: uuid.UUID, workers: Workers, timeout: float = 30) -> asyncpg.Record:
    try:
        rows = await wait_until_ended(settings.database_url, [str(job_id)], timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.logs()}") from None
    return rows[str(job_id)]
