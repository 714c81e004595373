"""Composite indexes, one for each query the API and the reconciler run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    # GET /v1/jobs: a tenant's jobs newest first, keyset-paginated on (created_at, id).
    "ix_jobs_tenant_created": "ON jobs (tenant_id, created_at DESC, id DESC)",
    # GET /v1/jobs?status=…: the same order within one status.
    "ix_jobs_tenant_status_created": "ON jobs (tenant_id, status, created_at DESC, id DESC)",
    # GET /v1/jobs?kind=…: the same order within one kind.
    "ix_jobs_tenant_kind_created": "ON jobs (tenant_id, kind, created_at DESC, id DESC)",
    # The reconciler: unfinished jobs not touched for a while. Partial, so it stays small.
    "ix_jobs_unfinished_updated": "ON jobs (updated_at) WHERE status IN ('queued', 'running')",
    # The API-key lookup of a tenant's keys (conveyor keys list).
    "ix_api_keys_tenant_created": "ON api_keys (tenant_id, created_at)",
}


def upgrade() -> None:
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} {definition}")
    # Idempotency-Key lookups: one row per (tenant, key), enforced.
    op.execute("CREATE UNIQUE INDEX ux_idempotency_keys_tenant_key ON idempotency_keys (tenant_id, key)")


def downgrade() -> None:
    op.execute("DROP INDEX ux_idempotency_keys_tenant_key")
    for name in reversed(INDEXES):
        op.execute(f"DROP INDEX {name}")
