"""Per-tenant limits: a quota on queued jobs, and fair ordering when one tenant floods."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from conveyor.kinds import Pipeline, Stage
from service import ledger
from service.databases.database import Database
from service.queue.backlog import COUNT_TTL_MS, PREFIX, Backlog
from testkit.chaos import job_rows, submit, submit_many
from testkit.net import free_port
from testkit.service import ApiServer, client, make_settings, new_tenant, running_worker, wait_for_job

pytestmark = pytest.mark.timeout(120)


async def test_queued_job_quota_is_429_per_tenant(database_url, redis_server, tmp_path):
    settings = make_settings(
        database_url, redis_server.url, tmp_path / "storage", tenant_max_queued_jobs=3, queue_name="limits-quota"
    )
    (_, greedy), (_, other) = await new_tenant(settings), await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, greedy) as http, client(api.url, other) as polite:
        accepted = await submit_many(http, 3, concurrency=1)
        refused = await submit(http, 4)
        unaffected = await submit(polite, 5)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/quota-exceeded") and int(refused.headers["retry-after"]) >= 1
    assert unaffected.status_code == 202
    originals = sorted(path.parent.name for path in (tmp_path / "storage").rglob("original"))
    assert originals == sorted([*accepted, unaffected.json()["id"]])  # the refused upload left nothing


async def _brief(run, input):
    await asyncio.sleep(0.05)
    return {}


async def test_a_flooding_tenant_does_not_starve_another(database_url, redis_server, tmp_path):
    settings = make_settings(
        database_url, redis_server.url, tmp_path / "storage", queue_name="limits-fair", worker_max_jobs=2
    )
    (_, flood_key), (_, small_key) = await new_tenant(settings), await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, flood_key) as flood, client(api.url, small_key) as small:
        backlog = await submit_many(flood, 200)
        newcomer = (await submit(small, 0)).json()["id"]
        async with running_worker(settings, [Pipeline("document", (Stage("brief", _brief),), timeout=30)]):
            done = await wait_for_job(small, newcomer, timeout=60)
            flood_rows = await job_rows(settings.database_url, backlog)
    started_before = sum(1 for row in flood_rows.values() if row["attempts"] > 0)
    assert done["status"] == "succeeded"
    # Without fairness the newcomer would wait for all 200; with it, only for the jobs the
    # flood had queued before its backlog grew.
    assert started_before < 50, started_before


@pytest.fixture
async def ledger_and_redis(settings):
    db = Database(settings)
    await db.open()
    redis = Redis.from_url(settings.redis_url)
    yield db, redis
    await redis.aclose()
    await db.close()


async def test_the_backlog_starts_from_the_ledger_and_refusals_count_nothing(ledger_and_redis, tenant):
    (db, redis), (tenant_id, _) = ledger_and_redis, tenant
    async with db.transaction() as conn:
        for _ in range(2):
            await ledger.create_job(conn, job_id=ledger.new_job_id(), tenant_id=tenant_id, kind="document", queue="q")
    count = Backlog(redis, db)
    assert await count.admit(tenant_id, quota=3) == 2  # counted in the ledger, then this one added
    assert await count.admit(tenant_id, quota=3) is None  # 3 queued: refused, and not counted
    assert int(await redis.get(f"{PREFIX}{tenant_id}")) == 3
    await count.withdraw(tenant_id)  # that admitted one was not recorded after all
    assert await count.admit(tenant_id, quota=3) == 2
    await asyncio.sleep(COUNT_TTL_MS / 1000 + 0.2)
    assert await count.admit(tenant_id, quota=10) == 2  # expired: the ledger's word again
    await redis.delete(f"{PREFIX}{tenant_id}")
    await count.withdraw(tenant_id)
    assert await redis.exists(f"{PREFIX}{tenant_id}") == 0  # no count without an expiry


async def test_admissions_that_find_no_count_together_are_each_counted_once(ledger_and_redis, tenant):
    (db, redis), (tenant_id, _) = ledger_and_redis, tenant
    await redis.delete(f"{PREFIX}{tenant_id}")
    async with db.transaction() as conn:
        queued = await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1 AND status = 'queued'", tenant_id)
    backlog = Backlog(redis, db)
    befores = await asyncio.gather(*(backlog.admit(tenant_id, quota=queued + 15) for _ in range(20)))
    assert sorted(before for before in befores if before is not None) == list(range(queued, queued + 15))
    assert befores.count(None) == 5  # past the quota: refused, counted nowhere
    assert int(await redis.get(f"{PREFIX}{tenant_id}")) == queued + 15


async def test_without_redis_admissions_go_on_unlimited(settings, tenant):
    db = Database(settings)
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        assert await Backlog(unreachable, db).admit(tenant[0], quota=1) == 0
    finally:
        await unreachable.aclose()
