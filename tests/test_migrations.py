"""The schema only changes through alembic: up from empty, down to nothing, up again."""

import asyncpg

from service.databases.migrate import downgrade, upgrade_async

TABLES = {
    "tenants",
    "api_keys",
    "jobs",
    "job_stages",
    "idempotency_keys",
    "deliveries",
    "documents",
    "service_secrets",
    "dashboard_sessions",
    "schedules",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows} - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(empty_database_url):
    import asyncio

    await upgrade_async(empty_database_url)
    assert TABLES <= await _tables(empty_database_url)
    await asyncio.to_thread(downgrade, empty_database_url, "base")
    assert await _tables(empty_database_url) == set()
    await upgrade_async(empty_database_url)
    assert TABLES <= await _tables(empty_database_url)


def test_alembic_command_line(empty_database_url, tmp_path):
    """`alembic upgrade head` from the repository root, as users run it, on DATABASE_URL."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": empty_database_url}
    for args in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"], ["current"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert "(head)" in done.stdout
