"""Retention: old finished jobs go with their files and results, old events and spent
idempotency keys go; anything recent or unfinished stays."""

import asyncpg

from pipelines.maintenance.cleanup import cleanup
from service import ledger
from service.databases.database import Database
from testkit.resources import open_resources
from testkit.service import make_settings, new_tenant


async def _store(storage, key: str) -> None:
    writer = storage.writer(key)
    await writer.write(key.encode())
    await writer.commit()


async def _job(conn, tenant_id, *, finished_days_ago: int | None, result: dict | None = None):
    job_id = ledger.new_job_id()
    await ledger.create_job(conn, job_id=job_id, tenant_id=tenant_id, kind="document", queue="q")
    if finished_days_ago is not None:
        await conn.execute(
            "UPDATE jobs SET status = 'succeeded', result = $2, finished_at = now() - make_interval(days => $3) "
            "WHERE id = $1",
            job_id,
            result,
            finished_days_ago,
        )
    return job_id


async def test_cleanup_deletes_what_is_past_retention_and_nothing_else(database_url, redis_server, tmp_path):
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        job_retention_days=30,
        event_retention_days=90,
        idempotency_key_ttl_hours=24,
        cleanup_batch_size=2,
    )
    tenant_id, _ = await new_tenant(settings)
    db = Database(settings)
    await db.open()
    async with db.transaction() as conn:
        export_key = f"tenants/{tenant_id}/exports/old.csv"
        old = [await _job(conn, tenant_id, finished_days_ago=40 + n) for n in range(4)]
        old_export = await _job(
            conn,
            tenant_id,
            finished_days_ago=31,
            result={"key": export_key, "nested": [{"key": "tenants/someone-else/x"}]},
        )
        recent = await _job(conn, tenant_id, finished_days_ago=29)
        unfinished = await _job(conn, tenant_id, finished_days_ago=None)
        await conn.execute("UPDATE jobs SET created_at = now() - interval '400 days' WHERE id = $1", unfinished)
        await conn.execute("INSERT INTO job_stages (job_id, name, position) VALUES ($1, 'store', 0)", old[0])
        await conn.execute(
            """
            INSERT INTO events (tenant_id, type, ts)
            SELECT $1, 'view', now() - make_interval(days => d, hours => 12) FROM generate_series(85, 95) AS d
            """,
            tenant_id,
        )
        await conn.execute(
            """
            INSERT INTO idempotency_keys (tenant_id, key, job_id, created_at) VALUES
                ($1, 'stale', NULL, now() - interval '25 hours'), ($1, 'fresh', $2, now() - interval '1 hour')
            """,
            tenant_id,
            recent,
        )
    await db.close()

    async with open_resources(settings) as resources:
        storage = resources.storage
        for job_id in [*old, old_export, recent, unfinished]:
            await _store(storage, f"tenants/{tenant_id}/jobs/{job_id}/original")
        await _store(storage, f"tenants/{tenant_id}/jobs/{old[0]}/renditions/720p.mp4")
        await _store(storage, export_key)
        await _store(storage, "tenants/someone-else/x")

        counts = await cleanup(resources)
        again = await cleanup(resources)

        left = {
            job_id
            for job_id in [*old, old_export, recent, unfinished]
            if await storage.size(f"tenants/{tenant_id}/jobs/{job_id}/original") is not None
        }
        assert left == {recent, unfinished}
        assert await storage.size(f"tenants/{tenant_id}/jobs/{old[0]}/renditions/720p.mp4") is None
        assert await storage.size(export_key) is None
        assert await storage.size("tenants/someone-else/x") is not None  # another tenant's key is never touched

    # The database is shared by the session's tests: other tenants' old rows may go too.
    assert counts["jobs"] >= 5 and counts["events"] >= 6 and counts["idempotency_keys"] >= 1
    assert again == {"jobs": 0, "events": 0, "idempotency_keys": 0}
    conn = await asyncpg.connect(database_url)
    try:
        jobs = {row["id"] for row in await conn.fetch("SELECT id FROM jobs WHERE tenant_id = $1", tenant_id)}
        days = await conn.fetchval(
            "SELECT array_agg(extract(day FROM now() - ts)::int ORDER BY ts DESC) FROM events WHERE tenant_id = $1",
            tenant_id,
        )
        keys = await conn.fetch("SELECT key FROM idempotency_keys WHERE tenant_id = $1", tenant_id)
        stages = await conn.fetchval("SELECT count(*) FROM job_stages WHERE job_id = $1", old[0])
    finally:
        await conn.close()
    assert jobs == {recent, unfinished}
    assert days == list(range(85, 90))
    assert [row["key"] for row in keys] == ["fresh"]
    assert stages == 0
