"""A tenant's own templates in the ledger: stored, listed, found by name, deleted.

Every query names the tenant, so a tenant neither sees nor uses another's template.
What a template needs from its data (`variables`) is found by the sandbox when it is
stored (`service.templating`) and kept beside it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service.templating import Source, check, variables

COLUMNS = "name, channel, subject, text, html, variables, created_at, updated_at"


@dataclass(frozen=True)
class TenantTemplate:
    name: str
    channel: str
    source: Source
    variables: list[str]
    created_at: datetime
    updated_at: datetime

    def lacking(self, data: Mapping[str, Any]) -> list[str]:
        """The variables this template reads that `data` does not have, sorted."""
        return sorted(set(self.variables) - set(data))

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TenantTemplate:
        return cls(
            name=row["name"],
            channel=row["channel"],
            source=Source(row["subject"], row["text"], row["html"]),
            variables=list(row["variables"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


async def put(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, channel: str, source: Source
) -> tuple[TenantTemplate, bool]:
    """Store the template (judged first: SyntaxProblem if a part is not valid Jinja);
    True when it is new, False when it replaced the tenant's template of that name."""
    check(source)
    row = await conn.fetchrow(
        f"""
        INSERT INTO templates AS t (tenant_id, name, channel, subject, text, html, variables)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, name) DO UPDATE SET
            channel = excluded.channel, subject = excluded.subject, text = excluded.text,
            html = excluded.html, variables = excluded.variables, updated_at = now()
        RETURNING {COLUMNS}, (xmax = 0) AS created
        """,
        tenant_id,
        name,
        channel,
        source.subject,
        source.text,
        source.html,
        sorted(variables(source)),
    )
    assert row is not None  # an upsert always returns its row
    return TenantTemplate.from_row(row), row["created"]


async def find(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str) -> TenantTemplate | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM templates WHERE tenant_id = $1 AND name = $2", tenant_id, name)
    return TenantTemplate.from_row(row) if row else None


async def list_all(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[TenantTemplate]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM templates WHERE tenant_id = $1 ORDER BY name", tenant_id)
    return [TenantTemplate.from_row(row) for row in rows]


async def delete(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str) -> bool:
    """True when the tenant had a template of that name."""
    result = await conn.execute("DELETE FROM templates WHERE tenant_id = $1 AND name = $2", tenant_id, name)
    return result.split()[-1] != "0"
