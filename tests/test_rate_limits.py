"""Per-key rate limits shared across API processes, with RateLimit headers; the budget of
failed authentications per address, and the cache of invalid keys."""

import asyncpg
import pytest
from redis.asyncio import Redis

from service.api.auth import FAILURES_PREFIX
from service.databases.migrate import upgrade_async
from testkit import postgres
from testkit.service import ApiServer, client, make_settings


async def test_limit_is_shared_by_two_api_processes(database_url, redis_server, tmp_path, tenant):
    settings = make_settings(database_url, redis_server.url, tmp_path, rate_limit_per_minute=6)
    async with ApiServer(settings) as one, ApiServer(settings) as two:
        async with client(one.url, tenant[1]) as a, client(two.url, tenant[1]) as b:
            answers = [await (a if n % 2 else b).get("/v1/jobs") for n in range(8)]
            other_key = await a.get("/v1/jobs", headers={"Authorization": "Bearer cvk_someone-else"})
            health = await a.get("/livez")
    statuses = [response.status_code for response in answers]
    assert statuses[:6] == [200] * 6
    assert statuses[6:] == [429, 429]
    limited = answers[-1]
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-policy"] == '"default";q=6;w=60'
    assert answers[0].headers["ratelimit"].startswith('"default";r=5;')
    assert other_key.status_code == 401  # a different key has its own budget
    assert "ratelimit" not in health.headers


async def test_one_key_has_one_budget_however_its_header_is_spelled(database_url, redis_server, tmp_path, tenant):
    """`Bearer`, `bearer`, `BEARER` and extra spaces name the same key, so they share its bucket."""
    settings = make_settings(database_url, redis_server.url, tmp_path, rate_limit_per_minute=4)
    key = tenant[1]
    spellings = [f"Bearer {key}", f"bearer {key}", f"BEARER {key}", f"Bearer    {key}", f"bEaReR\t{key}"]
    async with ApiServer(settings) as api, client(api.url) as http:
        answers = [await http.get("/v1/jobs", headers={"Authorization": spelling}) for spelling in spellings]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 429]
    assert answers[-1].headers["content-type"] == "application/problem+json"


@pytest.fixture
async def failure_budget(redis_server):
    """The failed-authentication budget of 127.0.0.1, emptied again after the test so that
    later tests' wrong keys get their 401."""
    redis = Redis.from_url(redis_server.url)
    yield
    await redis.delete(FAILURES_PREFIX + "127.0.0.1")
    await redis.aclose()


async def test_failed_authentications_are_throttled_per_address(
    database_url, redis_server, tmp_path, tenant, failure_budget
):
    settings = make_settings(database_url, redis_server.url, tmp_path, auth_failures_per_minute=3)
    async with ApiServer(settings) as one, ApiServer(settings) as two:
        async with client(one.url) as a, client(two.url) as b:
            answers = [
                await (a if n % 2 else b).get("/v1/jobs", headers={"Authorization": f"Bearer cvk_guess-{n}"})
                for n in range(5)
            ]
            again = await a.get("/v1/jobs", headers={"Authorization": "Bearer cvk_guess-0"})
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]  # shared by both processes
    for limited in (answers[3], answers[4], again):
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert again.status_code == 429


async def test_an_invalid_key_costs_no_database_round_trip_after_the_first(postgres_server, redis_server, tmp_path):
    """Its database refuses every connection after the first refusal of the key: the same key,
    however spelled, is still refused at once (401), while a new key meets the outage (503)."""
    name = await postgres.create_database()
    url = postgres.database_url(name)
    admin = await asyncpg.connect(postgres.admin_url())
    try:
        await upgrade_async(url)
        settings = make_settings(url, redis_server.url, tmp_path)
        async with ApiServer(settings) as api, client(api.url) as http:
            first = await http.get("/v1/jobs", headers={"Authorization": "Bearer cvk_not-a-key"})
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            repeated = await http.get("/v1/jobs", headers={"Authorization": "bearer   cvk_not-a-key"})
            new = await http.get("/v1/jobs", headers={"Authorization": "Bearer cvk_another-guess"})
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await postgres.drop_database(name)
    assert (first.status_code, repeated.status_code, new.status_code) == (401, 401, 503)
