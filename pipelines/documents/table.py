"""The document kind's table: what its pipeline read from each upload, and the search over it.

The pipeline writes it (`record_original`, `record_extraction`); the API reads it through
`search` and `page_text`, the document kind's only interface to the HTTP layer.

A row appears when the pipeline has verified the stored original (so failed documents can
be found by metadata and status too) and is completed with the text, pages and fields when
they are extracted. `created_at` is the job's, so documents and jobs sort the same way and
one cursor pages through either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from service.ledger import qualified
from service.ledger.views import VIEW_COLUMNS


async def record_original(conn: asyncpg.Connection, job: Mapping, original: Mapping) -> None:
    """The verified upload of `job` (content_type, size, sha256); its metadata for search."""
    await conn.execute(
        """
        INSERT INTO documents (job_id, tenant_id, content_type, size, sha256, metadata, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (job_id) DO UPDATE SET content_type = $3, size = $4, sha256 = $5
        """,
        job["id"],
        job["tenant_id"],
        original["content_type"],
        original["size"],
        original["sha256"],
        searchable_metadata(job["metadata"] or {}),
        job["created_at"],
    )


def searchable_metadata(metadata: Mapping) -> dict:
    """The metadata with scalar values as text, since `metadata.KEY=value` in a query string
    is text: `{"post": 7}` is found by `metadata.post=7`. One `@>` then matches every key."""
    return {
        key: value if isinstance(value, (str, dict, list)) else json.dumps(value) for key, value in metadata.items()
    }


async def record_extraction(conn: asyncpg.Connection, job_id: uuid.UUID, pages: list[str], fields: Mapping) -> None:
    """The text (per page and whole) and the fields; the email lowercased for lookups."""
    email = fields.get("email")
    await conn.execute(
        """
        UPDATE documents SET page_count = $2, pages = $3, text = $4, fields = $5, email = $6, name = $7,
                             extracted_at = now()
        WHERE job_id = $1
        """,
        job_id,
        len(pages),
        pages,
        full_text(pages),
        dict(fields),
        email.lower() if email else None,
        fields.get("name"),
    )


def full_text(pages: list[str]) -> str:
    return "\n\n".join(page for page in pages if page)


async def page_text(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID, number: int
) -> asyncpg.Record | None:
    """Page `number`'s text of a tenant's job (`text` NULL when it has no such page, or no
    text yet), with what says why: the job's `kind` and `status`, whether its document was
    `extracted`, its `page_count`, and whether that page was `truncated`. None: no such job."""
    return await conn.fetchrow(
        """
        SELECT j.kind, j.status, d.extracted_at IS NOT NULL AS extracted, d.page_count,
               d.pages -> ($3::int - 1) AS text,
               coalesce(j.result -> 'truncated_pages' @> to_jsonb($3::int), false) AS truncated
        FROM jobs j LEFT JOIN documents d ON d.job_id = j.id AND d.tenant_id = j.tenant_id
        WHERE j.id = $1 AND j.tenant_id = $2
        """,
        job_id,
        tenant_id,
        number,
    )


@dataclass(frozen=True)
class DocumentFilters:
    email: str | None = None
    status: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


async def search(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    filters: DocumentFilters,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """The jobs of a tenant's documents matching every filter, newest first, keyset-paginated.

    Each filter has its index: email the (tenant, email, created) b-tree, metadata the GIN
    (`@>`), status alone the jobs' (tenant, status, created) b-tree, which then drives the
    scan (the order is the same: documents carry their job's created_at).
    """
    by_job = filters.status is not None and filters.email is None and not filters.metadata
    created, row_id = ("j.created_at", "j.id") if by_job else ("d.created_at", "d.job_id")
    args: list = [tenant_id]
    conditions = ["d.tenant_id = $1", "j.tenant_id = $1"]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.email is not None:
        conditions.append(f"d.email = {arg(filters.email.lower())}")
    if filters.status is not None:
        conditions.append(f"j.status = {arg(filters.status)}")
    if filters.metadata:
        conditions.append(f"d.metadata @> {arg(filters.metadata)}::jsonb")
    if after is not None:
        conditions.append(f"({created}, {row_id}) < ({arg(after[0])}, {arg(after[1])})")
    return await conn.fetch(
        f"""
        SELECT {qualified(VIEW_COLUMNS, "j")} FROM documents d JOIN jobs j ON j.id = d.job_id
        WHERE {" AND ".join(conditions)}
        ORDER BY {created} DESC, {row_id} DESC LIMIT {arg(limit)}
        """,
        *args,
    )
