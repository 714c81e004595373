"""A Redis Sentinel failover under load, with real processes throughout.

A master, one replica and three sentinels (quorum 2); the API (uvicorn) and two workers
(`arq worker.WorkerSettings`) are given only the `redis+sentinel://` URL. Jobs are
submitted without pause while the master is killed (SIGKILL): no request answers 500,
the same processes (no supervisor restarts anything) follow the promoted replica, new
submissions run there, and every job answered 202, before, during or after, ends
`succeeded` with each of its stages' side effects accepted once.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import httpx
import pytest

from pipelines import lifecycle
from service import queue
from service.config import Settings
from testkit.chaos import assert_each_stage_ran_once, wait_until_ended
from testkit.net import free_port
from testkit.processes import ApiProcess, WorkerPool, settings_env
from testkit.sentinel import SentinelCluster
from testkit.service import client, make_settings, new_tenant, until

pytestmark = [pytest.mark.integration]

KINDS = "testkit.sample_kinds"
STAGES = ("fetch", "load")  # sync_account's, each reporting to the stage counter
PROBLEM = "application/problem+json"


@pytest.fixture
def sentinels():
    with SentinelCluster(down_after_ms=1000, failover_timeout_ms=3000) as cluster:
        yield cluster


class Load:
    """Submits `sync_account` jobs back to back and reads the last one, until stopped."""

    def __init__(self, http: httpx.AsyncClient, counter_url: str) -> None:
        self.http = http
        self.counter_url = counter_url
        self.answers: list[httpx.Response] = []
        self.accepted: list[str] = []
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        number = 0
        while not self.stopped.is_set():
            number += 1
            body = {"kind": "sync_account", "input": {"account": f"a{number}", "counter_url": self.counter_url}}
            answer = await self.http.post("/v1/jobs", json=body)
            self.answers.append(answer)
            if answer.status_code == 202:
                self.accepted.append(answer.json()["id"])
                self.answers.append(await self.http.get(f"/v1/jobs/{self.accepted[-1]}"))
            await asyncio.sleep(0.02)  # pacing, not synchronisation

    def accepted_since(self, count: int) -> int:
        return len(self.accepted) - count


async def _serves(http: httpx.AsyncClient, kind: str) -> bool:
    answer = await http.get("/v1/kinds")
    return answer.status_code == 200 and any(item["kind"] == kind for item in answer.json()["items"])


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


@dataclass
class Deployment:
    settings: Settings
    api: ApiProcess
    workers: WorkerPool
    http: httpx.AsyncClient

    def logs(self) -> str:
        return f"== api.log\n{self.api.log()[-3000:]}\n{self.workers.logs()}"


@pytest.fixture
async def deployment(database_url, sentinels, tmp_path):
    """The API and two workers as processes on the sentinels' URL, the workers' kinds
    published. Starting Python processes is slow on a busy machine: this is not timed."""
    settings = make_settings(
        database_url, sentinels.url, tmp_path / "storage", queue_name=f"sentinel-{os.urandom(4).hex()}"
    )
    _, key = await new_tenant(settings)
    env = settings_env(settings, conveyor_kinds=KINDS)
    api = ApiProcess(env, tmp_path / "api.log", start_timeout=120)
    try:
        with WorkerPool(env, tmp_path, count=2, settings_path="worker.WorkerSettings") as workers:
            await asyncio.to_thread(api.start)  # the workers start meanwhile
            async with client(api.url, key) as http:
                await until(lambda: _serves(http, "sync_account"), timeout=120)
                yield Deployment(settings, api, workers, http)
    finally:
        api.stop()


@pytest.mark.timeout(60, func_only=True)
async def test_api_and_workers_follow_a_sentinel_failover(deployment, sentinels, stage_counter):
    api, workers, http = deployment.api, deployment.workers, deployment.http
    pids = [api.pid, *(worker.pid for worker in workers.workers)]
    load = Load(http, stage_counter.url)
    running = asyncio.create_task(load.run())
    await until(lambda: len(load.accepted) >= 10, timeout=15)

    old = sentinels.current_master()
    await asyncio.to_thread(old.kill)
    await sentinels.promoted(old, timeout=20)
    promoted_at = len(load.accepted)
    await until(lambda: _ready(http), timeout=15)
    await until(lambda: load.accepted_since(promoted_at) >= 10, timeout=15)
    load.stopped.set()
    await running
    rows = await wait_until_ended(deployment.settings.database_url, load.accepted, timeout=30)

    processes = [api, *workers.workers]
    assert [process.alive for process in processes] == [True] * 3, deployment.logs()
    assert [process.pid for process in processes] == pids  # nobody restarted them
    statuses = {answer.status_code for answer in load.answers}
    assert statuses <= {200, 202, 503}, [answer.text for answer in load.answers if answer.status_code >= 500]
    for answer in load.answers:
        if answer.status_code == 503:
            assert answer.headers["content-type"] == PROBLEM and int(answer.headers["retry-after"]) >= 1
    assert {row["status"] for row in rows.values()} == {"succeeded"}, deployment.logs()
    await assert_each_stage_ran_once(deployment.settings.database_url, stage_counter, load.accepted, STAGES)


async def test_a_workers_connection_waits_for_the_promoted_replica(sentinels):
    """A command sent while there is no master is neither refused nor sent to the dead
    one: it waits, asking the sentinels, and is answered by the replica they promote."""
    redis = queue.connect(sentinels.url, ride_out=True)
    try:
        await redis.set("before", "kept")
        assert await redis.wait(1, 5000) == 1  # the replica has it
        await asyncio.to_thread(sentinels.current_master().kill)
        assert await asyncio.wait_for(redis.get("before"), 30) == b"kept"
        assert await redis.set("after", "written")  # on a master: it takes writes
    finally:
        await redis.aclose()


async def test_arqs_own_loop_is_given_a_client_that_does_not_raise():
    """What arq's Worker loop sends (health key, cron ticks, the key's removal at exit)
    is skipped, not raised, when Redis cannot answer: the loop, and the worker, go on."""
    redis = queue.connect(f"redis://127.0.0.1:{free_port()}/0", client=queue.Housekeeping)  # nothing listens
    try:
        assert await redis.zcard("queue") is None
        assert await redis.psetex("queue:health-check", 1000, b"ok") is None
        assert await redis.enqueue_job("cleanup", _job_id="cleanup:1", _queue_name="queue") is None
    finally:
        await redis.aclose()
    assert isinstance(lifecycle.housekeeping("redis+sentinel://127.0.0.1:1/m"), queue.Housekeeping)
