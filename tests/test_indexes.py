"""Each query the API and the reconciler run uses its composite index, at 200,000 jobs.

The queries are captured from the ledger's own functions, then EXPLAINed on a database
loaded with 200,000 jobs across 20 tenants (a quarter of them documents), so this fails
if code and indexes drift.
"""

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from pipelines.documents import table as documents
from service import ledger
from service.databases.migrate import upgrade_async
from testkit import postgres

JOBS = 200_000
TENANTS = 20


class Capture:
    """Stands in for a connection just long enough to record the SQL a function sends."""

    def __init__(self) -> None:
        self.query: str | None = None
        self.args: tuple = ()

    async def fetch(self, query, *args):
        self.query, self.args = query, args
        return []

    fetchrow = fetchval = fetch


@pytest.fixture(scope="module")
async def loaded_url(postgres_server):
    name = await postgres.create_database()
    url = postgres.database_url(name)
    await upgrade_async(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO tenants (name) SELECT 'tenant-' || n FROM generate_series(1, $1) AS n", TENANTS)
        await conn.execute(
            """
            INSERT INTO jobs (id, tenant_id, kind, status, queue, created_at, updated_at)
            SELECT gen_random_uuid(), t.ids[1 + n % $2],
                   (ARRAY['document', 'video', 'notification', 'analytics'])[1 + n % 4],
                   CASE WHEN n % 50 = 0 THEN 'queued' WHEN n % 97 = 0 THEN 'failed' ELSE 'succeeded' END,
                   'conveyor',
                   now() - make_interval(secs => n), now() - make_interval(secs => n)
            FROM generate_series(1, $1) AS n, (SELECT array_agg(id) AS ids FROM tenants) AS t
            """,
            JOBS,
            TENANTS,
        )
        await conn.execute(
            """
            INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_id)
            SELECT tenant_id, 'key-' || id, 'x', id FROM jobs
            """
        )
        await conn.execute(
            """
            INSERT INTO documents (job_id, tenant_id, content_type, size, sha256, metadata, email, created_at)
            SELECT id, tenant_id, 'application/pdf', 1000, 'x',
                   jsonb_build_object('candidate', (row_number() OVER ())::text, 'source', 'careers'),
                   'person' || abs(hashtext(id::text)) % 2000 || '@example.com', created_at
            FROM jobs WHERE kind = 'document'
            """
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    yield url
    await postgres.drop_database(name)


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


async def _explain(url: str, query: str, args: tuple) -> list[dict]:
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
    finally:
        await conn.close()
    return list(_plan_nodes(json.loads(raw)[0]["Plan"]))


async def _tenant(url: str) -> uuid.UUID:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT id FROM tenants ORDER BY name LIMIT 1")
    finally:
        await conn.close()


def _assert_index(nodes: list[dict], index: str) -> None:
    used = {node.get("Index Name") for node in nodes}
    scans = [node for node in nodes if node["Node Type"] == "Seq Scan"]
    assert index in used, f"expected {index}, plan used {used}"
    assert not scans, f"sequential scan in plan: {scans}"


async def _captured(function, *args, **kwargs) -> Capture:
    capture = Capture()
    await function(capture, *args, **kwargs)
    return capture


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "ix_jobs_tenant_created"),
        ({"status": "failed"}, "ix_jobs_tenant_status_created"),
        ({"kind": "video"}, "ix_jobs_tenant_kind_created"),
        ({"after": (datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=0))}, "ix_jobs_tenant_created"),
    ],
)
async def test_list_jobs_uses_its_index(loaded_url, filters, index):
    tenant_id = await _tenant(loaded_url)
    capture = await _captured(ledger.list_jobs, tenant_id, limit=51, **filters)
    _assert_index(await _explain(loaded_url, capture.query, capture.args), index)


async def test_reconciler_scan_uses_the_partial_index(loaded_url):
    capture = await _captured(ledger.stale_jobs, 10.0, ["document", "video"])
    _assert_index(await _explain(loaded_url, capture.query, capture.args), "ix_jobs_unfinished_updated")


async def test_idempotency_lookup_uses_the_unique_index(loaded_url):
    tenant_id = await _tenant(loaded_url)
    from service.api import idempotency

    _assert_index(await _explain(loaded_url, idempotency.PRIOR, (tenant_id, "key-x")), "ux_idempotency_keys_tenant_key")


@pytest.mark.parametrize(
    ("filters", "after", "index"),
    [
        (documents.DocumentFilters(), None, "ix_documents_tenant_created"),
        (
            documents.DocumentFilters(),
            (datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=0)),
            "ix_documents_tenant_created",
        ),
        (documents.DocumentFilters(email="Person7@example.com"), None, "ix_documents_tenant_email_created"),
        (
            documents.DocumentFilters(email="person7@example.com", status="succeeded"),
            None,
            "ix_documents_tenant_email_created",
        ),
        (documents.DocumentFilters(metadata={"candidate": "4242"}), None, "ix_documents_metadata"),
        (documents.DocumentFilters(status="failed"), None, "ix_jobs_tenant_status_created"),
    ],
    ids=["all", "after-cursor", "email", "email-and-status", "metadata", "status"],
)
async def test_document_search_uses_its_index(loaded_url, filters, after, index):
    tenant_id = await _tenant(loaded_url)
    capture = await _captured(documents.search, tenant_id, filters, limit=51, after=after)
    _assert_index(await _explain(loaded_url, capture.query, capture.args), index)
