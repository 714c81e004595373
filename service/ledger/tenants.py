"""Tenants, their API keys (stored as hashes) and their webhook signing secrets."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

KEY_PREFIX = "cvk_"


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str


def hash_key(key: str) -> bytes:
    """Keys are 256 random bits, so one SHA-256 is enough: there is nothing to brute-force."""
    return hashlib.sha256(key.encode()).digest()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def ensure_tenant(conn: asyncpg.Connection, name: str) -> Tenant:
    row = await conn.fetchrow(
        """
        INSERT INTO tenants (name) VALUES ($1)
        ON CONFLICT (name) DO UPDATE SET name = excluded.name
        RETURNING id, name
        """,
        name,
    )
    assert row is not None  # an upsert always returns its row
    return Tenant(row["id"], row["name"])


async def find_tenant(conn: asyncpg.Connection, name: str) -> Tenant | None:
    row = await conn.fetchrow("SELECT id, name FROM tenants WHERE name = $1", name)
    return Tenant(row["id"], row["name"]) if row else None


async def create_api_key(conn: asyncpg.Connection, tenant: Tenant) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_keys (tenant_id, prefix, key_hash) VALUES ($1, $2, $3)",
        tenant.id,
        key[:12],
        hash_key(key),
    )
    return key


async def list_api_keys(conn: asyncpg.Connection, tenant: Tenant) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT prefix, created_at, last_used_at, revoked_at FROM api_keys
        WHERE tenant_id = $1 ORDER BY created_at
        """,
        tenant.id,
    )


async def revoke_api_key(conn: asyncpg.Connection, tenant: Tenant, prefix: str) -> int:
    """Revoke the tenant's keys starting with `prefix` (the first 12 characters shown by list)."""
    result = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL",
        tenant.id,
        prefix[:12],
    )
    return int(result.split()[-1])


async def key_owner(conn: asyncpg.Connection, key_hash: bytes) -> tuple[Tenant, uuid.UUID] | None:
    """The tenant and key id of an unrevoked key, by the key's hash."""
    row = await conn.fetchrow(
        """
        SELECT t.id, t.name, k.id AS key_id FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = $1 AND k.revoked_at IS NULL
        """,
        key_hash,
    )
    return (Tenant(row["id"], row["name"]), row["key_id"]) if row else None


async def note_key_used(conn: asyncpg.Connection, key_id: uuid.UUID) -> None:
    """Stamp the key's `last_used_at`, to the minute: at most one write a minute per key."""
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        key_id,
    )


async def webhook_secrets(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[str]:
    """The tenant's signing secrets, newest first; one is created if there is none."""
    secrets_ = await conn.fetchval("SELECT webhook_secrets FROM tenants WHERE id = $1", tenant_id)
    if secrets_:
        return list(secrets_)
    return await conn.fetchval(
        """
        UPDATE tenants SET webhook_secrets = CASE WHEN cardinality(webhook_secrets) = 0
                                                  THEN ARRAY[$2] ELSE webhook_secrets END
        WHERE id = $1 RETURNING webhook_secrets
        """,
        tenant_id,
        new_webhook_secret(),
    )
