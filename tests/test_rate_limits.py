"""Per-key rate limits shared across API processes, with RateLimit headers."""

from tests.support.service import ApiServer, client, make_settings


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
