"""conveyor_enqueue inside the app's own transaction: a job exists exactly when the app's
transaction commits, and real worker processes start it through LISTEN/NOTIFY.

The job is what an app enqueues: one of its own kinds (testkit/sample_kinds.py's
`sync_account`), whose stages report to a stage counter, so "it ran once" is counted.

The workers here reconcile only jobs an hour old, so a job that starts was handed to arq
by a worker's listener, not by the reconciler (the backstop has a test of its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest
import redis.asyncio as redis
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from conveyor.client.transaction import (
    enqueue,
    enqueue_psycopg,
    enqueue_psycopg_async,
    enqueue_sqlalchemy,
    enqueue_sqlalchemy_async,
)
from pipelines import registry
from service.config import Settings
from service.databases.migrate import upgrade_async
from testkit import postgres, sample_kinds
from testkit import replica as replica_support
from testkit.chaos import job_rows, wait_until_ended
from testkit.processes import WorkerProcess, settings_env
from testkit.service import make_settings, new_tenant, publish_kinds, until
from testkit.stage_counter import StageCounter

pytestmark = pytest.mark.integration

LISTENER = "conveyor-listener"  # the application_name of the workers' listening connections
NOT_RECONCILED = 3600.0
KINDS = "testkit.sample_kinds"


def sqlalchemy_url(url: str, driver: str) -> str:
    """The database's URL as an app's SQLAlchemy takes it, on `driver`."""
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


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


async def test_a_committed_job_runs_once_though_every_worker_hears_of_it(
    app_settings, acme, counter, workers, app_conn
):
    async with app_conn.transaction():
        await app_conn.execute("INSERT INTO bookings (guest) VALUES ('Ada')")
        job_id = await enqueue(
            app_conn, tenant=acme[1], kind="sync_account", input=sync(counter, "committed"), priority="high"
        )
    job = await ended(app_settings, job_id, workers)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert ran_once(counter, job_id)  # two listeners handed it over; it ran once
    row = await app_conn.fetchrow("SELECT kind, queue, priority, max_tries, payload FROM jobs WHERE id = $1", job_id)
    assert (row["kind"], row["queue"], row["priority"]) == ("sync_account", app_settings.queue_name, 2)
    assert row["max_tries"] == sample_kinds.sync.spec(app_settings).tries
    assert json.loads(row["payload"]) == sync(counter, "committed")


async def test_a_rolled_back_job_leaves_nothing(app_settings, acme, counter, workers, app_conn, redis_server):
    transaction = app_conn.transaction()
    await transaction.start()
    await app_conn.execute("INSERT INTO bookings (guest) VALUES ('Grace')")
    doomed = await enqueue(app_conn, tenant=acme[1], kind="sync_account", input=sync(counter, "rolled-back"))
    await transaction.rollback()
    # A job committed after it runs: whatever the listeners heard before it, they handled.
    async with app_conn.transaction():
        later = await enqueue(app_conn, tenant=acme[1], kind="sync_account", input=sync(counter, "after"))
    assert (await ended(app_settings, later, workers))["status"] == "succeeded"
    assert await job_rows(app_settings.database_url, [str(doomed)]) == {}
    assert await app_conn.fetchval("SELECT count(*) FROM bookings WHERE guest = 'Grace'") == 0
    async with redis.from_url(redis_server.url) as client:
        assert await client.keys(f"*{doomed}*") == []
    assert counter.for_job(str(doomed)) == []


async def test_a_dropped_listener_connection_is_made_again(app_settings, acme, counter, workers, app_conn):
    dropped = await listener_pids(app_settings.database_url)
    assert len(dropped) >= 2
    await app_conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(dropped))
    await until(lambda: _relistened(app_settings, dropped), timeout=30)
    async with app_conn.transaction():
        job_id = await enqueue(app_conn, tenant=acme[1], kind="sync_account", input=sync(counter, "relistened"))
    assert (await ended(app_settings, job_id, workers))["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def _relistened(settings: Settings, dropped: set[int]) -> bool:
    return len(await listener_pids(settings.database_url) - dropped) >= 2


async def test_a_job_committed_while_nobody_listened_is_started_by_the_reconciler(
    postgres_server, redis_server, tmp_path
):
    """The backstop: a notification sent while no listener was connected is lost, and the
    job, never handed to Redis, is found by the reconciler (RECONCILE_AFTER_SECONDS)."""
    name = await postgres.create_database()
    database_url = postgres.database_url(name)
    try:
        await upgrade_async(database_url)
        # Redis database 1: the reconciler's tick lock is not contended by the module's workers.
        redis_url = redis_server.url.removesuffix("/0") + "/1"
        settings = worker_settings(database_url, redis_url, tmp_path / "storage", reconcile_after_seconds=1.0)
        await publish_sample_kinds(settings)
        await new_tenant(settings, "quiet")
        server = StageCounter().start()
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                job_id = await enqueue(conn, tenant="quiet", kind="sync_account", input=sync(server, "missed"))
            async with redis.from_url(redis_url) as client:
                assert not await client.exists(f"arq:job:{job_id}")
            async with Workers(settings, tmp_path, count=1) as workers:
                job = await ended(settings, job_id, workers)
        finally:
            await conn.close()
            server.stop()
    finally:
        await postgres.drop_database(name)
    assert job["status"] == "succeeded"
    assert ran_once(server, job_id)


@pytest.mark.skipif(not replica_support.available(), reason="needs PG 15 binaries and root")
async def test_after_a_failover_the_listener_listens_on_the_promoted_primary(redis_server, tmp_path):
    """DATABASE_URL lists both hosts; the primary dies and its standby is promoted: the
    listener finds the new primary, and a job committed there starts."""
    pair = replica_support.StreamingReplica()
    pair.start()
    try:
        conn = await asyncpg.connect(pair.primary.url())
        try:
            await conn.execute("CREATE DATABASE conveyor")
        finally:
            await conn.close()
        await upgrade_async(pair.primary.url("conveyor"))
        both = f"postgresql://postgres@127.0.0.1:{pair.primary.port},127.0.0.1:{pair.replica.port}/conveyor"
        redis_url = redis_server.url.removesuffix("/0") + "/2"
        settings = worker_settings(both, redis_url, tmp_path / "storage")
        await publish_sample_kinds(settings)
        await new_tenant(settings, "failover")
        server = StageCounter().start()
        await pair.caught_up()
        promoted = pair.replica.url("conveyor")
        try:
            async with Workers(settings, tmp_path, count=1) as workers:
                pair.fail_over()
                await until(lambda: listener_pids(promoted), timeout=60)
                conn = await asyncpg.connect(promoted)
                try:
                    async with conn.transaction():
                        job_id = await enqueue(
                            conn, tenant="failover", kind="sync_account", input=sync(server, "failover")
                        )
                finally:
                    await conn.close()
                job = await ended(settings, job_id, workers, timeout=60)
        finally:
            server.stop()
    finally:
        pair.stop()
    assert job["status"] == "succeeded"
    assert ran_once(server, job_id)


async def test_sqlalchemy_async_session_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    engine = create_async_engine(sqlalchemy_url(app_settings.database_url, "asyncpg"))
    try:
        async with AsyncSession(engine) as session, session.begin():
            job_id = await enqueue_sqlalchemy_async(
                session, tenant=acme[1], kind="sync_account", input=sync(counter, "sqlalchemy"), metadata={"a": 1}
            )
    finally:
        await engine.dispose()
    job = await ended(app_settings, job_id, workers)
    assert job["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_psycopg_connection_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    def in_a_transaction() -> uuid.UUID:
        with psycopg.connect(app_settings.database_url) as conn, conn.transaction():
            conn.execute("INSERT INTO bookings (guest) VALUES ('Linus')")
            return enqueue_psycopg(
                conn, tenant=acme[1], kind="sync_account", input=sync(counter, "psycopg"), max_tries=3
            )

    job_id = await asyncio.to_thread(in_a_transaction)
    job = await ended(app_settings, job_id, workers)
    assert job["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_psycopg_async_connection_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    async with await psycopg.AsyncConnection.connect(app_settings.database_url) as conn, conn.transaction():
        job_id = await enqueue_psycopg_async(
            conn, tenant=acme[1], kind="sync_account", input=sync(counter, "psycopg-async")
        )
    assert (await ended(app_settings, job_id, workers))["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_sqlalchemy_sync_session_enqueues_in_its_transaction(app_settings, acme, counter, workers):
    def in_a_transaction() -> uuid.UUID:
        engine = create_engine(sqlalchemy_url(app_settings.database_url, "psycopg"))
        try:
            with Session(engine) as session, session.begin():
                return enqueue_sqlalchemy(
                    session, tenant=acme[1], kind="sync_account", input=sync(counter, "sqlalchemy-sync")
                )
        finally:
            engine.dispose()

    job_id = await asyncio.to_thread(in_a_transaction)
    assert (await ended(app_settings, job_id, workers))["status"] == "succeeded"
    assert ran_once(counter, job_id)


async def test_options_are_recorded_on_the_job(app_settings, acme, app_conn):
    await publish_sample_kinds(app_settings)
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    options = {
        "priority": "low",
        "run_at": run_at,
        "max_tries": 3,
        "timeout": 12.5,
        "callback_url": "https://app.example/hooks/done",
        "metadata": {"booking": 42},
        "concurrency_key": "guest-7",
    }
    transaction = app_conn.transaction()
    await transaction.start()
    try:  # the row as the transaction sees it; rolled back after
        job_id = await enqueue(app_conn, tenant=acme[1], kind="sync_account", input={"account": "x"}, **options)
        row = await app_conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    finally:
        await transaction.rollback()
    assert (row["tenant_id"], row["status"], row["attempts"]) == (acme[0], "queued", 0)
    assert (row["priority"], row["run_at"], row["max_tries"], row["timeout"]) == (0, run_at, 3, 12.5)
    assert (row["callback_url"], row["concurrency_key"]) == ("https://app.example/hooks/done", "guest-7")
    assert json.loads(row["metadata"]) == {"booking": 42}


def test_the_helpers_import_no_database_driver():
    """An app has one driver: importing the helpers must not need the others."""
    code = "import sys, conveyor.client.transaction; print(sorted({'asyncpg', 'psycopg', 'sqlalchemy'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"tenant": "nobody-here", "kind": "sync_account"}, "unknown tenant 'nobody-here'"),
        ({"kind": "nope"}, "unknown kind 'nope'; the known kinds are: "),
        ({"kind": "document"}, "kind 'document' cannot be enqueued here; its jobs are created by /v1/documents"),
        ({"kind": "sync_account", "priority": "urgent"}, 'options.priority must be "low", "normal" or "high"'),
        ({"kind": "sync_account", "run_at": "tomorrow"}, "options.run_at must be an ISO 8601 date and time"),
        ({"kind": "sync_account", "run_at": "2026-05-03T12:00:00"}, "with an offset"),
        ({"kind": "sync_account", "run_at": "2026-13-45T12:00:00Z"}, "options.run_at is not a valid moment"),
        ({"kind": "sync_account", "max_tries": 0}, "options.max_tries must be a whole number from 1 to 1000"),
        ({"kind": "sync_account", "timeout": -1}, "options.timeout must be a number of seconds above 0"),
        ({"kind": "sync_account", "callback_url": "ftp://x"}, "options.callback_url must be an absolute http://"),
        ({"kind": "sync_account", "metadata": [1]}, "options.metadata must be a JSON object"),
        ({"kind": "sync_account", "colour": "red"}, "unknown option(s) colour; the options are priority, run_at"),
    ],
)
async def test_bad_calls_raise_in_the_apps_transaction(app_settings, acme, app_conn, call, message):
    await publish_sample_kinds(app_settings)
    call = {"tenant": acme[1], "input": {}, **call}
    transaction = app_conn.transaction()
    await transaction.start()
    try:
        await app_conn.execute("INSERT INTO bookings (guest) VALUES ('Bad')")
        with pytest.raises(asyncpg.InvalidParameterValueError) as raised:
            await enqueue(app_conn, **call)
        assert message in str(raised.value)
        with pytest.raises(asyncpg.InFailedSQLTransactionError):  # the app's transaction is aborted
            await app_conn.execute("SELECT 1")
    finally:
        await transaction.rollback()
