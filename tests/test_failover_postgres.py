"""A PostgreSQL primary failover with DATABASE_URL naming both hosts in libpq's form.

A primary and a synchronous streaming standby (PG 15) on two ports; migrations, the API
and a worker all run on `postgresql://…:P,…:S/conveyor?target_session_attrs=read-write`.
The primary dies (an immediate stop): while no host takes writes every request answers
503 with Retry-After, never 500; once the standby is promoted the same API process and
worker, left alone, take and run jobs there, and every job answered 202 before is there.
The CLI and `conveyor up`'s checks refuse cleanly during the outage and work after it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import httpx
import pytest

from pipelines import registry
from service.cli.output import CliError
from service.cli.preflight import check_dependencies
from service.config import Settings
from service.databases.migrate import upgrade_async
from testkit import replica as replica_support
from testkit.service import ApiServer, client, make_settings, new_tenant, running_worker, until, wait_for_job

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not replica_support.available(), reason="needs PG 15 binaries and root"),
]


@pytest.fixture
def pair():
    cluster = replica_support.StreamingReplica()
    cluster.start()
    yield cluster
    cluster.stop()


async def synchronous_standby(pair: replica_support.StreamingReplica) -> None:
    """Commits on the primary wait for the standby (the durability mode docs/operations.md
    asks for), and the database the service uses exists."""
    conn = await asyncpg.connect(pair.primary.url(), timeout=5)
    try:
        await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        await conn.execute("SELECT pg_reload_conf()")
        await until(lambda: conn.fetchval("SELECT sync_state = 'sync' FROM pg_stat_replication"), timeout=30)
        await conn.execute("CREATE DATABASE conveyor")
    finally:
        await conn.close()


async def migrated(pair: replica_support.StreamingReplica, redis_server, tmp_path, **overrides) -> Settings:
    """Settings whose DATABASE_URL names the primary, then its synchronous standby, in
    libpq's form, migrated by alembic through that URL; workers run testkit.sample_kinds."""
    await synchronous_standby(pair)
    url = (
        f"postgresql://postgres@127.0.0.1:{pair.primary.port},127.0.0.1:{pair.replica.port}/conveyor"
        "?target_session_attrs=read-write"
    )
    await upgrade_async(url)
    queue_name = f"conveyor-test-{os.urandom(4).hex()}"
    kinds = ["testkit.sample_kinds"]
    return make_settings(
        url, redis_server.url, tmp_path / "storage", queue_name=queue_name, conveyor_kinds=kinds, **overrides
    )


def greeting(http: httpx.AsyncClient, name: str):
    return http.post("/v1/jobs", json={"kind": "greet", "input": {"name": name}})


async def test_the_service_follows_a_promoted_standby_without_a_500(pair, redis_server, tmp_path):
    settings = await migrated(pair, redis_server, tmp_path)
    url = settings.database_url
    _, key = await new_tenant(settings)
    async with (
        running_worker(settings, registry.pipelines(settings)),
        ApiServer(settings) as api,
        client(api.url, key) as http,
    ):
        await until(lambda: _has_greet(http), timeout=30)
        before = [await greeting(http, f"before-{n}") for n in range(5)]
        assert [answer.status_code for answer in before] == [202] * 5

        await asyncio.to_thread(pair.primary.stop)  # no host takes writes now
        during = [await greeting(http, f"during-{n}") for n in range(3)]
        during.append(await http.get(f"/v1/jobs/{before[0].json()['id']}"))
        assert [answer.status_code for answer in during] == [503] * 4, [answer.text for answer in during]
        assert all(int(answer.headers["retry-after"]) > 0 for answer in during)
        with pytest.raises(CliError, match="DATABASE_URL"):
            await check_dependencies(settings, {"database_url"})
        refused = await create_key(url, "during")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr

        await asyncio.to_thread(pair.promote)
        statuses: list[int] = []

        async def accepted() -> httpx.Response | None:
            answer = await greeting(http, "after")
            statuses.append(answer.status_code)
            return answer if answer.status_code == 202 else None

        after = [await until(accepted, timeout=30), *[await greeting(http, f"after-{n}") for n in range(4)]]
        assert set(statuses) <= {202, 503}, statuses
        assert [answer.status_code for answer in after] == [202] * 5
        await check_dependencies(settings, {"database_url"})  # `conveyor up` would start
        created = await create_key(url, "after")
        assert created.returncode == 0, created.stderr

        ended = [await wait_for_job(http, answer.json()["id"]) for answer in (*before, *after)]
    assert [job["status"] for job in ended] == ["succeeded"] * 10, ended
    promoted = await asyncpg.connect(pair.replica.url("conveyor"), timeout=5)
    try:
        assert not await promoted.fetchval("SELECT pg_is_in_recovery()")
        ran_there = await promoted.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
            [job["id"] for job in ended],
        )
    finally:
        await promoted.close()
    assert ran_there == 10


async def test_a_frozen_primary_does_not_hide_the_promoted_standby(pair, redis_server, tmp_path):
    """The old primary still accepts connections but never answers (frozen, or cut off):
    each host gets its share of the connect timeout, so the promoted standby after it is
    found, and requests answer 202 again instead of waiting on the first host forever."""
    settings = await migrated(pair, redis_server, tmp_path, db_connect_timeout=2.0, db_statement_timeout=1.0)
    _, key = await new_tenant(settings)
    async with running_worker(settings, registry.pipelines(settings)), ApiServer(settings) as api:
        async with client(api.url, key) as http:
            await until(lambda: _has_greet(http), timeout=30)
            assert (await greeting(http, "before")).status_code == 202
            pair.primary.freeze()
            await asyncio.to_thread(pair.promote)
            statuses: list[int] = []

            async def accepted() -> bool:
                statuses.append((await greeting(http, "after")).status_code)
                return statuses[-1] == 202

            await until(accepted, timeout=60)
    assert set(statuses) <= {202, 503}, statuses


async def create_key(database_url: str, tenant: str) -> subprocess.CompletedProcess:
    """`conveyor keys create` in a process of its own, on `database_url`."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "keys", "create", "--tenant", tenant],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _has_greet(http: httpx.AsyncClient) -> bool:
    """The worker has published its kinds: the API takes jobs of them."""
    answer = await http.get("/v1/kinds")
    return answer.status_code == 200 and any(kind["kind"] == "greet" for kind in answer.json()["items"])
