"""Dependencies fail under load: Redis loses everything, the primary PostgreSQL restarts,
the S3 server stops. Clients get 202 or 503 with Retry-After (never a 500), and every
accepted job still ends `succeeded`, its finished stages run once."""

from __future__ import annotations

import asyncio
import os

import boto3
import pytest
import redis.asyncio as redis
from arq.connections import create_pool

from service.databases.migrate import upgrade_async
from service.queue import redis_settings
from testkit.chaos import (
    assert_each_stage_ran_once,
    stage_rows,
    submit,
    submit_many,
    wait_until_busy,
    wait_until_ended,
)
from testkit.chaos_worker import STAGE_NAMES
from testkit.net import free_port
from testkit.pg_cluster import PgCluster
from testkit.processes import WorkerPool, settings_env
from testkit.redis_server import RedisServer
from testkit.s3_server import CREDENTIALS, S3Server
from testkit.service import ApiServer, client, make_settings, new_tenant

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]
PROBLEM = "application/problem+json"


def _chaos_env(settings, counter, *, max_jobs: int, stage_seconds: float) -> dict[str, str]:
    return settings_env(
        settings.model_copy(update={"worker_max_jobs": max_jobs}),
        chaos_stage_seconds=stage_seconds,
        chaos_counter_url=counter.url,
    )


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1


async def test_redis_flushed_and_restarted_mid_run(database_url, stage_counter, tmp_path):
    private = RedisServer()
    private.start()
    settings = make_settings(database_url, private.url, tmp_path / "storage", queue_name="faults-redis")
    _, key = await new_tenant(settings)
    env = _chaos_env(settings, stage_counter, max_jobs=4, stage_seconds=0.3)
    try:
        async with ApiServer(settings) as api, client(api.url, key) as http:
            with WorkerPool(env, tmp_path, count=2) as pool:
                ids = await submit_many(http, 30)
                await wait_until_busy(settings.database_url, settings.queue_name, explain=pool.logs)
                async with redis.from_url(private.url) as r:
                    await r.flushall()
                ids += await submit_many(http, 5)
                await asyncio.sleep(1.5)
                private.restart()  # no persistence: everything Redis held is gone again
                ids += await submit_many(http, 5)
                rows = await wait_until_ended(settings.database_url, ids, timeout=60, on_tick=pool.supervise)
    finally:
        private.stop()
    assert {row["status"] for row in rows.values()} == {"succeeded"}, pool.logs()
    assert pool.restarts == 0, pool.logs()  # the workers rode the restart out
    await assert_each_stage_ran_once(settings.database_url, stage_counter, ids, STAGE_NAMES)


async def test_the_workers_redis_connections_wait_out_a_short_outage():
    private = RedisServer()
    private.start()
    pool = await create_pool(redis_settings(private.url))
    try:
        await pool.set("before", 1)
        private.stop()
        during = asyncio.create_task(pool.get("before"))  # refused: retried, not raised
        await asyncio.sleep(1.5)
        assert not during.done()
        private.start()  # same port, nothing kept
        assert await asyncio.wait_for(during, 10) is None
    finally:
        await pool.aclose()
        private.stop()


@pytest.fixture
async def pg_cluster():
    cluster = PgCluster(free_port()).init()
    cluster.start()
    yield cluster
    cluster.destroy()


async def _load(http, accepted: list[str], answers: list, stop: asyncio.Event) -> None:
    """Uploads and polls, back to back, until told to stop."""
    number = 0
    while not stop.is_set():
        number += 1
        response = await submit(http, 1000 + number)
        answers.append(response)
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        if accepted:
            answers.append(await http.get(f"/v1/jobs/{accepted[-1]}"))
        await asyncio.sleep(0.05)


async def test_primary_restart_while_uploads_and_polls_continue(pg_cluster, redis_server, stage_counter, tmp_path):
    url = pg_cluster.url()
    await upgrade_async(url)
    settings = make_settings(
        url, redis_server.url, tmp_path / "storage", queue_name="faults-pg", db_connect_timeout=2.0
    )
    _, key = await new_tenant(settings)
    env = _chaos_env(settings, stage_counter, max_jobs=8, stage_seconds=0.3)
    accepted, answers, stop = [], [], asyncio.Event()
    async with ApiServer(settings) as api, client(api.url, key) as http:
        with WorkerPool(env, tmp_path, count=2) as pool:
            load = asyncio.create_task(_load(http, accepted, answers, stop))
            await asyncio.sleep(2)
            await asyncio.to_thread(pg_cluster.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(pg_cluster.start)
            await asyncio.sleep(2)
            stop.set()
            await load
            rows = await wait_until_ended(url, accepted, timeout=60, on_tick=pool.supervise)
    statuses = [response.status_code for response in answers]
    assert set(statuses) <= {200, 202, 503}, [r.text for r in answers if r.status_code not in (200, 202, 503)]
    outage = [response for response in answers if response.status_code == 503]
    assert outage, "some requests must have met the outage"
    for response in outage:
        _assert_unavailable(response)
    assert {row["status"] for row in rows.values()} == {"succeeded"}, pool.logs()
    await assert_each_stage_ran_once(url, stage_counter, accepted, STAGE_NAMES)


def _create_bucket(endpoint_url: str, bucket: str) -> None:
    boto3.client("s3", endpoint_url=endpoint_url, **_boto_credentials()).create_bucket(Bucket=bucket)


def _boto_credentials() -> dict:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


async def test_storage_outage_503s_uploads_and_running_jobs_retry(database_url, redis_server, stage_counter, tmp_path):
    os.environ.update(CREDENTIALS)
    s3 = S3Server()
    s3.start()
    _create_bucket(s3.endpoint_url, "outage")
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path,
        storage_url="s3://outage/conveyor",
        s3_endpoint_url=s3.endpoint_url,
        queue_name="faults-s3",
    )
    tenant_id, key = await new_tenant(settings)
    env = _chaos_env(settings, stage_counter, max_jobs=10, stage_seconds=1.0)
    try:
        async with ApiServer(settings) as api, client(api.url, key) as http:
            with WorkerPool(env, tmp_path, count=1) as pool:
                ids = await submit_many(http, 6)
                await _wait_for_stage(settings.database_url, ids, "fetch")  # inputs read: moto forgets them
                s3.stop()
                during = await submit(http, 99)
                await asyncio.sleep(3)  # `publish` meets the outage and backs off
                s3.start()  # same port
                _create_bucket(s3.endpoint_url, "outage")
                rows = await wait_until_ended(settings.database_url, ids, timeout=60, on_tick=pool.supervise)
            objects = boto3.client("s3", endpoint_url=s3.endpoint_url, **_boto_credentials()).list_objects_v2(
                Bucket="outage"
            )
    finally:
        s3.stop()
    _assert_unavailable(during)
    assert during.json()["dependency"] == "storage"
    assert {row["status"] for row in rows.values()} == {"succeeded"}, pool.logs()
    assert any(row["attempts"] > 1 for row in rows.values()), "running jobs must have met the outage"
    keys = {item["Key"] for item in objects["Contents"]}
    assert keys == {f"conveyor/tenants/{tenant_id}/jobs/{job}/result.json" for job in ids}
    await assert_each_stage_ran_once(settings.database_url, stage_counter, ids, STAGE_NAMES)


async def _wait_for_stage(database_url: str, ids: list[str], stage: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stages = await stage_rows(database_url, ids)
        if all(stages.get((job, stage)) and stages[(job, stage)]["status"] == "succeeded" for job in ids):
            return
        assert loop.time() < deadline, f"stage {stage} not finished for every job"
        await asyncio.sleep(0.1)
