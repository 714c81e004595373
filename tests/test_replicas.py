"""Reads through a real streaming replica: routing, read-your-writes under lag, failures.

One primary and one hot standby (PG 15) run for this module; each test leaves the
replica running, thawed and caught up for the next.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from conveyor.kinds import Pipeline, Stage
from service import ledger, queue
from service.databases import consistency
from service.databases.database import Database
from service.databases.replicas import parse_replica_url
from testkit import replica as replica_support
from testkit.files import multipart_file, text_pdf
from testkit.service import ADMIN_KEY, ApiServer, client, make_settings, new_tenant, running_worker

pytestmark = pytest.mark.skipif(not replica_support.available(), reason="needs PG 15 binaries and root")

STATUS_ORDER = {"queued": 0, "running": 1, "succeeded": 2}
PASSWORD = "s3cret-replica-pw"  # trust auth ignores it; it must never show in /readyz
DEADLINE = 10.0  # generous: reads are bounded by the 0.5 s replica timeouts set below


@pytest.fixture(scope="module")
def cluster():
    pair = replica_support.StreamingReplica()
    pair.start()
    yield pair
    pair.stop()


@pytest.fixture(scope="module")
async def primary_url(cluster):
    from service.databases.migrate import upgrade_async

    conn = await asyncpg.connect(cluster.primary.url())
    try:
        await conn.execute("CREATE DATABASE conveyor")
    finally:
        await conn.close()
    url = cluster.primary.url("conveyor")
    await upgrade_async(url)
    await cluster.caught_up()
    return url


@pytest.fixture(autouse=True)
async def replica_restored(cluster):
    """Whatever a test did to the replica, the next one finds it healthy and caught up."""
    yield
    cluster.replica.thaw()
    if not (cluster.replica.dir / "postmaster.pid").exists():
        cluster.start_replica()
    await cluster.set_apply_delay("0")
    await cluster.resume_replay()
    await cluster.caught_up()


def replica_url(cluster) -> str:
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{cluster.replica.port}/conveyor?region=eu-west"


@pytest.fixture
def settings(primary_url, cluster, redis_server, tmp_path):
    return make_settings(
        primary_url,
        redis_server.url,
        tmp_path / "storage",
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
        database_url_read=[replica_url(cluster)],
        region="eu-west",
        db_read_connect_timeout=0.5,
        db_read_statement_timeout=0.5,
        replica_quarantine_seconds=0.5,
        admin_key=ADMIN_KEY,  # /readyz shows the details to the admin only
    )


@pytest.fixture
async def db(settings):
    redis = queue.connect(settings.redis_url)
    database = Database(settings, redis=redis)
    await database.open()
    yield database
    await database.close()
    await redis.aclose()


@pytest.fixture
async def tenant(settings, cluster):
    created = await new_tenant(settings)
    await cluster.caught_up()  # API keys are read from replicas
    return created


async def served_by_replica(db: Database, **read) -> bool:
    async with db.read(**read) as conn:
        return await conn.fetchval("SELECT pg_is_in_recovery()")


async def eventually_served_by_replica(db: Database) -> None:
    async with asyncio.timeout(DEADLINE):
        while not await served_by_replica(db):
            await asyncio.sleep(0.05)


def reads(role: str, database: str) -> float:
    return REGISTRY.get_sample_value("conveyor_db_reads_total", {"role": role, "database": database}) or 0.0


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("conveyor_db_read_fallbacks_total", {"reason": reason}) or 0.0


async def test_reads_go_to_the_replica_and_writes_to_the_primary(db, cluster):
    label = f"127.0.0.1:{cluster.replica.port}/conveyor"
    before = reads("replica", label)
    assert await served_by_replica(db)
    assert await served_by_replica(db, follow=("job:never-written",))
    assert reads("replica", label) == before + 2
    async with db.transaction() as conn:
        assert not await conn.fetchval("SELECT pg_is_in_recovery()")
    primary, replica = await db.check()
    assert primary["role"] == "primary" and primary["reachable"] is True
    assert replica == {
        "role": "replica",
        "name": replica_url(cluster).replace(PASSWORD, "***").split("?")[0],
        "region": "eu-west",
        "reachable": True,
        "lag_bytes": replica["lag_bytes"],
        "lagging": False,
        "quarantined": False,
    }


async def test_a_write_inside_read_fails_loudly(db, settings):
    async with db.read() as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()")
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        async with db.read() as conn:
            await conn.execute("INSERT INTO tenants (name) VALUES ('written-on-a-replica')")
    # Without replicas the primary serves reads, read-only all the same.
    primary_only = Database(settings.model_copy(update={"database_url_read": []}))
    await primary_only.open()
    try:
        for statement in (
            "INSERT INTO tenants (name) VALUES ('written-in-a-read')",
            "SELECT id FROM tenants LIMIT 1 FOR UPDATE",
        ):
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                async with primary_only.read() as conn:
                    assert not await conn.fetchval("SELECT pg_is_in_recovery()")
                    await conn.execute(statement)
    finally:
        await primary_only.close()


async def _create_and_poll(db: Database, tenant_id: uuid.UUID, advance: bool) -> None:
    """Create a job, read it back at once, and (sometimes) walk its status forward."""
    job_id = ledger.new_job_id()
    track = (f"job:{job_id}", f"tenant:{tenant_id}")
    async with db.transaction(track=track) as conn:
        await ledger.create_job(conn, job_id=job_id, tenant_id=tenant_id, kind="document", queue="replica-test")
    seen = "queued"
    for status in ("running", "succeeded") if advance else ():
        async with db.read(follow=track) as conn:
            row = await ledger.get_job(conn, tenant_id, job_id)
        assert row is not None, "a job just created went missing"
        assert STATUS_ORDER[row["status"]] >= STATUS_ORDER[seen], f"{seen} went back to {row['status']}"
        async with db.transaction(track=track) as conn:
            await conn.execute("UPDATE jobs SET status = $2 WHERE id = $1", job_id, status)
        seen = status
    async with db.read(follow=track) as conn:
        row = await ledger.get_job(conn, tenant_id, job_id)
    assert row is not None, "a job just created went missing"
    assert row["status"] == seen


async def test_each_replica_is_checked_not_any(settings, primary_url, cluster, tenant):
    """GitLab bug 413203: one replica having caught up says nothing about another. Here
    one "replica" is the primary itself (always caught up), the other has replay paused."""
    both = settings.model_copy(update={"database_url_read": [f"{primary_url}?region=eu-west", replica_url(cluster)]})
    redis = queue.connect(settings.redis_url)
    db = Database(both, redis=redis)
    await db.open()
    try:
        await cluster.pause_replay()
        served = set()
        for _ in range(100):
            await _create_and_poll(db, tenant[0], advance=False)
            served.add(await served_by_replica(db))
        assert served == {True, False}, "unfollowed reads should have spread over both"
    finally:
        await db.close()
        await redis.aclose()


async def _quick(run, input):
    return {"bytes": await run.resources.storage.size(run.payload["input"]["key"])}


async def _create_and_poll_through_api(http) -> None:
    created = await http.post("/v1/documents", files=multipart_file(text_pdf("lag")))
    assert created.status_code == 202, created.text
    token = created.headers[consistency.HEADER]
    seen = "queued"
    async with asyncio.timeout(30):
        while seen != "succeeded":
            polled = await http.get(created.headers["location"])
            assert polled.status_code == 200, polled.text
            status = polled.json()["status"]
            assert STATUS_ORDER[status] >= STATUS_ORDER[seen], f"{seen} went back to {status}"
            seen = status
            await asyncio.sleep(0.02)
    listed = await http.get("/v1/jobs", headers={consistency.HEADER: token})
    assert created.json()["id"] in [job["id"] for job in listed.json()["items"]]


@pytest.mark.parametrize("lag", ["replay paused", "apply delay"])
async def test_read_your_writes_while_the_replica_lags(lag, db, settings, cluster, tenant):
    tenant_id, key = tenant
    if lag == "replay paused":
        await cluster.pause_replay()
    else:
        await cluster.set_apply_delay("2s")
    stale_before = fallbacks("stale")
    semaphore = asyncio.Semaphore(10)

    async def pair(index: int) -> None:
        async with semaphore:
            await _create_and_poll(db, tenant_id, advance=index % 5 == 0)

    await asyncio.gather(*(pair(index) for index in range(500)))
    # The replica really is behind: the reads above had to avoid it.
    assert fallbacks("stale") > stale_before
    async with db.read() as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()")
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1", tenant_id) < 500
    async with (
        ApiServer(settings) as api,
        client(api.url, key) as http,
        running_worker(settings, [Pipeline("document", (Stage("store", _quick),), timeout=30)]),
    ):
        await asyncio.gather(*(_create_and_poll_through_api(http) for _ in range(3)))


async def test_the_consistency_token_is_honoured_and_checked(settings, db, cluster, tenant):
    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        created = await http.post("/v1/documents", files=multipart_file(text_pdf("token")))
        token = created.headers[consistency.HEADER]
        async with db.transaction() as conn:
            assert consistency.parse_lsn(token) <= await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        await cluster.caught_up()
        await cluster.pause_replay()
        async with db.transaction() as conn:  # past the replica now, and tracked under no name
            await conn.execute("SELECT pg_logical_emit_message(false, 'conveyor-test', 'x')")
            later = consistency.format_lsn(await conn.fetchval("SELECT pg_current_wal_insert_lsn()"))
        stale = fallbacks("stale")
        polled = await http.get(created.headers["location"], headers={consistency.HEADER: later})
        assert polled.status_code == 200 and polled.json()["id"] == created.json()["id"]
        assert fallbacks("stale") == stale + 1  # the token alone kept the read off the replica
        bad = await http.get(created.headers["location"], headers={consistency.HEADER: "yesterday"})
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert consistency.format_lsn(consistency.parse_lsn(later)) == later


async def test_uploads_that_share_an_insert_each_read_their_own_job(settings, db, cluster, tenant):
    """Concurrent uploads are committed by one INSERT (`service.ledger.job_inserts`); each response
    still carries a token covering its job, and each job is read back at once although the
    replica has replayed none of them."""
    await cluster.caught_up()
    await cluster.pause_replay()
    stale = fallbacks("stale")
    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        created = await asyncio.gather(
            *(http.post("/v1/documents", files=multipart_file(text_pdf(f"shared {n}"))) for n in range(20))
        )
        assert [response.status_code for response in created] == [202] * 20
        async with db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT id, xmin::text::bigint AS xid FROM jobs WHERE id = ANY($1::uuid[])",
                [response.json()["id"] for response in created],
            )
        assert len(rows) == 20 and len({row["xid"] for row in rows}) < 20  # some shared a transaction
        for response in created:
            token = consistency.parse_lsn(response.headers[consistency.HEADER])
            polled = await http.get(
                response.headers["location"], headers={consistency.HEADER: consistency.format_lsn(token)}
            )
            assert polled.status_code == 200 and polled.json()["id"] == response.json()["id"]
    assert fallbacks("stale") >= stale + 20  # the replica could serve none of them


async def _job_is_served(http, job_id: str) -> None:
    async with asyncio.timeout(DEADLINE):
        polled = await http.get(f"/v1/jobs/{job_id}")
    assert polled.status_code == 200 and polled.json()["id"] == job_id


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
async def test_a_dead_replica_falls_back_to_the_primary_and_returns(failure, settings, db, cluster, tenant):
    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        job_id = (await http.post("/v1/documents", files=multipart_file(text_pdf("x")))).json()["id"]
        await cluster.caught_up()
        assert await served_by_replica(db)
        if failure == "stopped":
            cluster.stop_replica()
        else:
            cluster.replica.freeze()
        await _job_is_served(http, job_id)
        async with asyncio.timeout(DEADLINE):
            assert not await served_by_replica(db)
            assert not await served_by_replica(db, follow=(f"job:{job_id}",))
        ready = await http.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert ready.status_code == 200 and ready.json()["status"] == "warn"
        primary, replica = ready.json()["checks"]["database"]
        assert primary["status"] == "pass" and primary["role"] == "primary"
        assert replica["status"] == "warn" and replica["reachable"] is False and replica["region"] == "eu-west"
        assert PASSWORD not in ready.text and "***" in replica["name"]
        if failure == "stopped":
            cluster.start_replica()
        else:
            cluster.replica.thaw()
        await eventually_served_by_replica(db)
        await _job_is_served(http, job_id)


async def test_a_lagging_replica_is_quarantined_until_it_catches_up(settings, cluster):
    lag_limit = 64 * 1024
    lagging_settings = settings.model_copy(update={"replica_max_lag_bytes": lag_limit})
    db = Database(lagging_settings)
    await db.open()
    try:
        assert await served_by_replica(db)
        await cluster.pause_replay()
        async with db.transaction() as conn:
            await conn.execute(
                "SELECT pg_logical_emit_message(false, 'conveyor-test', repeat('x', $1::int))", lag_limit * 2
            )
        _, replica = await db.check()
        assert replica["lagging"] is True and replica["lag_bytes"] > lag_limit and replica["reachable"] is True
        assert not await served_by_replica(db)
        await cluster.resume_replay()
        async with asyncio.timeout(DEADLINE):
            while (await db.check())[1]["lagging"]:
                await asyncio.sleep(0.05)
        await eventually_served_by_replica(db)
        label = f"127.0.0.1:{cluster.replica.port}/conveyor"
        assert REGISTRY.get_sample_value("conveyor_db_replica_lag_bytes", {"database": label}) < lag_limit
    finally:
        await db.close()


def test_replica_urls_carry_their_region(settings):
    address = parse_replica_url("postgresql://u:pw@db-2:6432/conveyor?sslmode=disable&region=eu-west")
    assert address.url == "postgresql://u:pw@db-2:6432/conveyor?sslmode=disable"
    assert address.region == "eu-west"
    assert address.name == "postgresql://u:***@db-2:6432/conveyor?sslmode=disable"
    assert address.label == "db-2:6432/conveyor"
    assert parse_replica_url("postgresql://db-3/conveyor").region is None


def test_reads_prefer_replicas_of_their_own_region(settings):
    from service.databases.replicas import ReplicaSet

    urls = [
        "postgresql://us-1/c?region=us-east",
        "postgresql://eu-1/c?region=eu-west",
        "postgresql://any-1/c",
        "postgresql://eu-2/c?region=eu-west",
    ]
    replicas = ReplicaSet(settings.model_copy(update={"database_url_read": urls, "region": "eu-west"}))
    for replica in replicas.replicas:
        replica.healthy = True
    replicas.replicas[1].healthy = False
    for _ in range(20):
        order = [replica.address.url for replica in replicas.candidates()]
        assert order[0] == "postgresql://eu-2/c"
        assert sorted(order[1:]) == ["postgresql://any-1/c", "postgresql://us-1/c"]
