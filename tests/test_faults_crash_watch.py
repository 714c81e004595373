"""A worker killed with kill -9 is known dead the moment its connections close: its jobs run
again without waiting for its heartbeat to expire. A PostgreSQL restart, which ends every
worker's session (and so frees every worker's lock) at once, hands back nothing."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aredis

from pipelines.maintenance.handback import CONNECTIONS_CLOSED, HEARTBEAT_STOPPED
from pipelines.maintenance.session import LOCK_CLASS, registry_key
from service.databases.migrate import upgrade_async
from testkit.chaos import job_rows, submit_many, wait_until_ended
from testkit.net import free_port
from testkit.pg_cluster import PgCluster
from testkit.processes import WorkerProcess, settings_env
from testkit.service import ApiServer, client, make_settings, new_tenant, until

pytestmark = [pytest.mark.timeout(150), pytest.mark.integration]

HANDED_BACK = "handed a dead worker's jobs back"
STILL_CONNECTED = "still connected to Redis: alive"


async def _registered(settings, count: int) -> bool:
    """Whether `count` workers of the queue are looked after by the crash watch (a beat registers them)."""
    async with aredis.from_url(settings.redis_url) as redis:
        return await redis.zcard(registry_key(settings.queue_name)) == count


async def _locks_held(database_url: str, count: int) -> bool:
    """Whether `count` workers hold their advisory lock."""
    try:
        conn = await asyncpg.connect(database_url)
    except (OSError, asyncpg.CannotConnectNowError):
        return False
    try:
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted", LOCK_CLASS
        )
    finally:
        await conn.close()
    return held == count


async def _running_on(database_url: str, ids: list[str], pid: int) -> bool:
    rows = (await job_rows(database_url, ids)).values()
    return len(rows) == len(ids) and all(
        row["status"] == "running" and row["worker_id"].split(":")[1] == str(pid) for row in rows
    )


async def test_a_killed_workers_jobs_go_back_when_its_connections_close(api, settings, tenant, stage_counter, tmp_path):
    # A heartbeat that outlives the test: only the closed connections can tell.
    slow_to_expire = settings.model_copy(update={"worker_dead_after_seconds": 300.0})
    gate = tmp_path / "gate"
    env = settings_env(slow_to_expire, chaos_counter_url=stage_counter.url, chaos_gate_file=gate)
    doomed = WorkerProcess(env, tmp_path / "doomed.log").start()
    survivor = WorkerProcess(env, tmp_path / "survivor.log")
    try:
        async with client(api.url, tenant[1]) as http:
            ids = await submit_many(http, 3)
        await until(lambda: _running_on(settings.database_url, ids, doomed.pid), timeout=60)
        survivor.start()
        await until(lambda: _registered(settings, 2), timeout=60)
        doomed.kill()
        gate.touch()
        rows = await wait_until_ended(settings.database_url, ids, timeout=60)
    finally:
        doomed.stop()
        survivor.stop()
    assert {row["status"] for row in rows.values()} == {"succeeded"}, survivor.log()
    assert {row["attempts"] for row in rows.values()} == {2}
    assert HANDED_BACK in survivor.log() and CONNECTIONS_CLOSED in survivor.log(), survivor.log()
    assert HEARTBEAT_STOPPED not in survivor.log()


@pytest.fixture
def cluster():
    """A PostgreSQL of this test's own, to restart."""
    server = PgCluster(free_port()).init()
    server.start()
    yield server
    server.destroy()


async def test_a_postgres_restart_hands_back_no_job_of_a_live_worker(cluster, redis_server, stage_counter, tmp_path):
    await upgrade_async(cluster.url())
    settings = make_settings(cluster.url(), redis_server.url, tmp_path / "storage", queue_name="pg-restart")
    gate = tmp_path / "gate"
    env = settings_env(settings, chaos_counter_url=stage_counter.url, chaos_gate_file=gate)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log").start() for n in range(2)]

    def logs() -> str:
        return "\n".join(worker.log() for worker in workers)

    _, key = await new_tenant(settings)
    try:
        async with ApiServer(settings) as api:
            async with client(api.url, key) as http:
                ids = await submit_many(http, 4)
            await until(lambda: _all_running(settings.database_url, ids), timeout=60)
            await until(lambda: _registered(settings, 2), timeout=60)
            await until(lambda: _locks_held(cluster.url(), 2), timeout=30)
            cluster.restart()  # every session ends: both workers' locks are free at once
            await until(lambda: STILL_CONNECTED in logs(), timeout=60)  # the watch saw them free
            await until(lambda: _locks_held(cluster.url(), 2), timeout=30)  # and both took theirs again
            gate.touch()
            rows = await wait_until_ended(settings.database_url, ids, timeout=60)
    finally:
        for worker in workers:
            worker.stop()
    assert {row["status"] for row in rows.values()} == {"succeeded"}, logs()
    # (A job busy with the database during the restart is retried by its own worker: its
    # attempts say nothing here. Handing back is the watch's act alone, and it logs each.)
    assert HANDED_BACK not in logs()


async def _all_running(database_url: str, ids: list[str]) -> bool:
    rows = (await job_rows(database_url, ids)).values()
    return len(rows) == len(ids) and all(row["status"] == "running" for row in rows)
