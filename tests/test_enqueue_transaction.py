"""conveyor_enqueue inside the app's own transaction: a job exists exactly when the app's
transaction commits, and real worker processes start it through LISTEN/NOTIFY.

The job is what an app enqueues: one of its own kinds (testkit/sample_kinds.py's
`sync_account`), whose stages report to a stage counter, so "it ran once" is counted.

The workers here reconcile only jobs an hour old, so a job that starts was handed to arq
by a worker's listener, not by the reconciler (the backstop has a test of its own). The
same through each supported driver, and the options and refusals of a call, are in
tests/test_enqueue_drivers.py.
"""

from __future__ import annotations

import json

import asyncpg
import pytest
import redis.asyncio as redis

from conveyor.client.transaction import enqueue
from service.config import Settings
from service.databases.migrate import upgrade_async
from testkit import postgres, sample_kinds
from testkit import replica as replica_support
from testkit.app_transactions import (  # noqa: F401 (fixtures)
    Workers,
    acme,
    app_conn,
    app_settings,
    bookings,
    counter,
    ended,
    listener_pids,
    publish_sample_kinds,
    ran_once,
    sync,
    worker_settings,
    workers,
)
from testkit.chaos import job_rows
from testkit.service import new_tenant, until
from testkit.stage_counter import StageCounter

pytestmark = pytest.mark.integration


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
                try:
                    await until(lambda: listener_pids(promoted), timeout=60)
                except AssertionError:  # timed out: what the worker said meanwhile
                    raise AssertionError(f"no listener on the promoted primary\n{workers.logs()}") from None
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
