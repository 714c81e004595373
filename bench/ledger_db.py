"""A fresh PostgreSQL database for one measurement, migrated to head, with a tenant to own jobs."""

from __future__ import annotations

import uuid

from service.config import Settings
from service.databases.database import Database
from service.databases.migrate import upgrade_async
from service.ledger.tenants import create_api_key, ensure_tenant
from testkit.postgres import create_database, database_url, drop_database

__all__ = ["drop_database", "migrated_database", "tenant_with_key"]


async def migrated_database(prefix: str) -> tuple[str, str]:
    """(name, url) of a new database at the latest migration; drop it with `drop_database(name)`."""
    name = await create_database(prefix)
    url = database_url(name)
    await upgrade_async(url)
    return name, url


async def tenant_with_key(settings: Settings, name: str) -> tuple[uuid.UUID, str]:
    """A tenant and a fresh API key for it."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            tenant = await ensure_tenant(conn, name)
            return tenant.id, await create_api_key(conn, tenant)
    finally:
        await db.close()
