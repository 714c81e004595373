"""The deployment over separate hosts (testkit.topology): two API hosts and three worker
hosts, each in its own network namespace, over PostgreSQL with a synchronous standby,
Redis behind three Sentinels, and S3. Jobs from both API hosts run once each across the
worker hosts, a read on one API host sees a write made on the other, a worker host cut
off mid-job hands its jobs over, and a PostgreSQL failover and a Redis one are each
ridden out by the processes left alone, with no 500 and no acknowledged job lost."""

from __future__ import annotations

import asyncio
import itertools
import shutil

import asyncpg
import httpx
import pytest

from service.databases import consistency
from testkit import replica
from testkit.chaos import assert_each_stage_ran_once, submit, submit_many, wait_until_busy, wait_until_ended
from testkit.chaos_worker import STAGE_NAMES
from testkit.netns import netns_permitted
from testkit.service import client, new_tenant, until
from testkit.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300), pytest.mark.xdist_group("netns")]


@pytest.fixture
async def deployment(tmp_path):
    why_not = "the ip command is missing" if shutil.which("ip") is None else netns_permitted()
    if why_not or not replica.available():
        pytest.skip(why_not or "needs PG 15 binaries and root")
    topology = Topology(tmp_path)
    try:
        yield await topology.start(chaos_stage_seconds=0.2)
    finally:
        topology.stop()


@pytest.fixture
async def api_hosts(deployment):
    """An HTTP client on each API host, as one tenant."""
    _, key = await new_tenant(deployment.settings())
    async with client(deployment.apis[0].url, key) as first, client(deployment.apis[1].url, key) as second:
        yield first, second


def worker_pid(row: asyncpg.Record) -> int:
    return int(row["worker_id"].split(":")[1])


async def test_jobs_from_two_api_hosts_run_once_each_across_three_worker_hosts(deployment, api_hosts):
    first, second = api_hosts
    created = await submit(first, 0)
    assert created.status_code == 202, created.text
    token = {consistency.HEADER: created.headers[consistency.HEADER]}
    read = await second.get(f"/v1/jobs/{created.json()['id']}", headers=token)
    assert read.status_code == 200, read.text  # a read on one API host sees a write made on the other

    ids = [created.json()["id"], *await submit_many(first, 45, first=1), *await submit_many(second, 45, first=46)]
    url = deployment.settings().database_url
    rows = await wait_until_ended(url, ids, timeout=180)
    assert {row["status"] for row in rows.values()} == {"succeeded"}, deployment.logs()
    await assert_each_stage_ran_once(url, deployment.counter, ids, STAGE_NAMES)
    assert {worker_pid(row) for row in rows.values()} == {worker.pid for worker in deployment.workers}


async def test_a_worker_host_cut_off_mid_job_hands_its_jobs_to_the_others(deployment, api_hosts):
    first, _ = api_hosts
    url = deployment.settings().database_url
    ids = await submit_many(first, 30)
    victim = deployment.worker_host(min(await wait_until_busy(url, deployment.queue_name, explain=deployment.logs)))
    victim.cut()
    try:
        rows = await wait_until_ended(url, ids, timeout=120)
    finally:
        victim.join()
    assert {row["status"] for row in rows.values()} == {"succeeded"}, deployment.logs()
    resumed = [row for row in rows.values() if row["attempts"] > 1]
    assert resumed, "some job must have been running on the host that was cut off"
    assert all(deployment.worker_host(worker_pid(row)) is not victim for row in resumed)
    await assert_each_stage_ran_once(url, deployment.counter, ids, STAGE_NAMES)


class Submissions:
    """Rounds of one document to each API host; every answer's status kept."""

    def __init__(self, api_hosts) -> None:
        self.api_hosts = api_hosts
        self.numbers = itertools.count()
        self.answers: list[httpx.Response] = []

    async def round(self) -> list[httpx.Response]:
        answers = [await submit(host, next(self.numbers)) for host in self.api_hosts]
        self.answers.extend(answers)
        return answers

    async def both_hosts_accept(self) -> bool:
        return all(answer.status_code == 202 for answer in await self.round())

    def check(self) -> list[str]:
        """Only 202s and 503s with Retry-After were answered; the ids of the 202s."""
        refused = [answer for answer in self.answers if answer.status_code != 202]
        assert all(answer.status_code == 503 for answer in refused), [answer.text for answer in refused]
        assert all(int(answer.headers["retry-after"]) > 0 for answer in refused)
        return [answer.json()["id"] for answer in self.answers if answer.status_code == 202]


async def test_a_postgresql_failover_is_ridden_out_with_no_500_and_no_job_lost(deployment, api_hosts):
    pids = [worker.pid for worker in deployment.workers]
    submissions = Submissions(api_hosts)
    for _ in range(5):
        assert [answer.status_code for answer in await submissions.round()] == [202, 202]
    await asyncio.to_thread(deployment.postgres.primary.stop)
    for _ in range(3):
        await submissions.round()
    await asyncio.to_thread(deployment.postgres.promote)
    await until(submissions.both_hosts_accept, timeout=60)

    rows = await wait_until_ended(deployment.settings().database_url, submissions.check(), timeout=120)
    assert {row["status"] for row in rows.values()} == {"succeeded"}, deployment.logs()
    assert [worker.pid for worker in deployment.workers if worker.alive] == pids  # no restarts


async def test_a_redis_sentinel_failover_is_ridden_out_with_no_500_and_no_job_lost(deployment, api_hosts):
    pids = [process.pid for process in (*deployment.apis, *deployment.workers)]
    submissions = Submissions(api_hosts)
    for _ in range(5):
        assert [answer.status_code for answer in await submissions.round()] == [202, 202]
    old = deployment.redis.current_master()
    await asyncio.to_thread(old.kill)
    promotion = asyncio.create_task(deployment.redis.promoted(old, timeout=30))
    while not promotion.done():
        await submissions.round()
    await promotion
    await until(submissions.both_hosts_accept, timeout=60)

    rows = await wait_until_ended(deployment.settings().database_url, submissions.check(), timeout=120)
    assert {row["status"] for row in rows.values()} == {"succeeded"}, deployment.logs()
    assert [process.pid for process in (*deployment.apis, *deployment.workers) if process.alive] == pids
