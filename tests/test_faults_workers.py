"""Worker processes die (kill -9) or are asked to stop (SIGTERM) while jobs run: nothing
is lost, a finished stage never runs again, each job's webhook arrives once."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import defaultdict

import asyncpg
import pytest

from pipelines import registry
from service.config import Settings
from service.ledger.tenants import webhook_secrets
from testkit.chaos import (
    assert_each_stage_ran_once,
    busy_worker_pids,
    stage_rows,
    submit_many,
    wait_until_busy,
    wait_until_ended,
)
from testkit.chaos_worker import STAGE_NAMES
from testkit.processes import WorkerPool, WorkerProcess, settings_env
from testkit.service import ApiServer, client
from testkit.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.timeout(150)

JOBS = 100
KILLS = 5
KILL_EVERY = 2.0
CALLBACKS = "callback" in {pipeline.name for pipeline in registry.pipelines(Settings())}


async def _secret(database_url, tenant_id) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return (await webhook_secrets(conn, tenant_id))[0]
    finally:
        await conn.close()


async def _kill_busy_workers(pool: WorkerPool, settings) -> list[int]:
    """Once the workers have started running jobs (a loaded machine starts them slowly),
    every KILL_EVERY seconds kill -9 a worker that is running a job; restart it."""
    await wait_until_busy(settings.database_url, settings.queue_name, timeout=60, explain=pool.logs)
    killed = []
    for _ in range(KILLS):
        busy = await busy_worker_pids(settings.database_url, settings.queue_name)
        victims = [worker for worker in pool.workers if worker.alive and worker.pid in busy]
        if victims:
            victim = random.choice(victims)
            victim.kill()
            killed.append(victim.pid)
            pool.supervise()
        await asyncio.sleep(KILL_EVERY)
    return killed


async def test_kill_9_workers_while_100_jobs_run(settings, tenant, stage_counter, tmp_path):
    tenant_id, key = tenant
    receiver, data = None, {}
    if CALLBACKS:
        receiver = WebhookReceiver(await _secret(settings.database_url, tenant_id)).start()
        data = {"callback_url": f"{receiver.url}/hooks"}
    # The receiver is on loopback: the API (which checks callback URLs) and the workers allow it.
    worker_settings = settings.model_copy(update={"worker_max_jobs": 4, "callback_allowed_hosts": ["127.0.0.1"]})
    env = settings_env(worker_settings, chaos_stage_seconds=0.3, chaos_counter_url=stage_counter.url)
    try:
        with WorkerPool(env, tmp_path, count=3) as pool:
            async with ApiServer(worker_settings) as api:
                async with client(api.url, key) as http:
                    ids = await submit_many(http, JOBS, **data)
                killed = await _kill_busy_workers(pool, settings)
                rows = await wait_until_ended(settings.database_url, ids, timeout=60, on_tick=pool.supervise)
                if receiver is not None:
                    await _wait_for_deliveries(receiver, ids)
    finally:
        if receiver is not None:
            receiver.stop()

    assert {row["status"] for row in rows.values()} == {"succeeded"}, pool.logs()
    assert len(killed) >= 3, "the kills must land on workers with running jobs"
    assert sum(row["attempts"] - 1 for row in rows.values()) >= 1, "some job must have resumed after a kill"

    await assert_each_stage_ran_once(settings.database_url, stage_counter, ids, STAGE_NAMES)
    # A repeat can only come from a worker killed between reporting and checkpointing.
    assert stage_counter.duplicates() <= len(killed) * worker_settings.worker_max_jobs

    if receiver is not None:
        by_job = defaultdict(set)
        for delivery in receiver.at("hooks"):
            assert delivery.verified, delivery.problem
            by_job[json.loads(delivery.body)["data"]["id"]].add(delivery.headers["webhook-id"])
        assert set(by_job) == set(ids)
        assert all(len(webhook_ids) == 1 for webhook_ids in by_job.values()), "one webhook per job"


async def _wait_for_deliveries(receiver: WebhookReceiver, ids: list[str], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while {json.loads(d.body)["data"]["id"] for d in receiver.at("hooks")} < set(ids):
        assert loop.time() < deadline, "webhooks missing"
        await asyncio.sleep(0.2)


async def _sigterm_when_busy(http, settings, worker: WorkerProcess, jobs: int) -> tuple[list[str], int]:
    """Submit jobs, SIGTERM the worker once it runs one; the ids and its exit code."""
    ids = await submit_many(http, jobs)
    await wait_until_busy(settings.database_url, settings.queue_name, explain=worker.log)
    worker.signal(signal.SIGTERM)
    return ids, await asyncio.to_thread(worker.wait, 30)


async def test_sigterm_lets_running_jobs_finish_within_the_grace_period(api, settings, tenant, stage_counter, tmp_path):
    env = settings_env(settings, chaos_stage_seconds=0.5, chaos_counter_url=stage_counter.url, chaos_grace_seconds=10)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    async with client(api.url, tenant[1]) as http:
        ids, exit_code = await _sigterm_when_busy(http, settings, worker, 3)
    rows = await wait_until_ended(settings.database_url, ids, timeout=5)
    assert exit_code == 0, worker.log()
    assert {row["status"] for row in rows.values()} == {"succeeded"}
    assert all(row["attempts"] == 1 for row in rows.values())  # finished in place, not handed back


async def test_sigterm_past_the_grace_period_hands_jobs_back(api, settings, tenant, stage_counter, tmp_path):
    gate = tmp_path / "gate"
    env = settings_env(
        settings,
        chaos_stage_seconds=0.1,
        chaos_counter_url=stage_counter.url,
        chaos_grace_seconds=1,
        chaos_gate_file=gate,
    )
    stopping = WorkerProcess(env, tmp_path / "stopping.log").start()
    async with client(api.url, tenant[1]) as http:
        ids, exit_code = await _sigterm_when_busy(http, settings, stopping, 2)
        gate.touch()
        successor = WorkerProcess(env, tmp_path / "successor.log").start()
        try:
            rows = await wait_until_ended(settings.database_url, ids, timeout=30)
        finally:
            successor.stop()
    assert exit_code == 0, stopping.log()
    assert {row["status"] for row in rows.values()} == {"succeeded"}, successor.log()
    assert all(row["attempts"] >= 2 for row in rows.values())  # resumed by the successor
    stages = await stage_rows(settings.database_url, ids)
    assert all(stages[(job, "fetch")]["attempt"] == 1 for job in ids)  # its finished stage was kept
