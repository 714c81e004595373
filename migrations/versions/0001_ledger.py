"""The job ledger: tenants, hashed API keys, jobs, their stages, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


TABLES = [
    """
    CREATE TABLE tenants (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL UNIQUE,
        webhook_secrets text[] NOT NULL DEFAULT '{}',
        max_queued_jobs integer,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        prefix text NOT NULL,
        key_hash bytea NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at timestamptz
    )
    """,
    """
    CREATE TABLE jobs (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        kind text NOT NULL,
        status text NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        queue text NOT NULL,
        priority smallint NOT NULL DEFAULT 0,
        progress real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
        stage text,
        attempts integer NOT NULL DEFAULT 0,
        max_tries integer NOT NULL DEFAULT 5,
        cancel_requested boolean NOT NULL DEFAULT false,
        worker_id text,
        payload jsonb NOT NULL DEFAULT '{}',
        metadata jsonb NOT NULL DEFAULT '{}',
        callback_url text,
        error jsonb,
        result jsonb,
        traceparent text,
        run_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
    )
    """,
    """
    CREATE TABLE job_stages (
        job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        name text NOT NULL,
        position smallint NOT NULL,
        status text NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
        attempt integer NOT NULL DEFAULT 0,
        started_at timestamptz,
        finished_at timestamptz,
        error jsonb,
        checkpoint jsonb,
        PRIMARY KEY (job_id, name)
    )
    """,
    """
    CREATE TABLE idempotency_keys (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        key text NOT NULL,
        request_hash text,
        job_id uuid REFERENCES jobs (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
]


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys, job_stages, jobs, api_keys, tenants")
