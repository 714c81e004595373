"""Kinds declared in Python, published by the workers that run them, and what a job may
ask of its kind beyond the defaults: its own attempt timeout and a concurrency key.

The API never imports a kind's code (an API host may lack its dependencies): it reads a
kind's description and input schema from `kinds`, which every worker rewrites at start.
`endpoint` names the route that creates a kind's jobs when it is not `POST /v1/jobs`
(a document or a video comes with an upload).

Revision ID: 0008_kinds
Revises: 0007_service_secrets
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008_kinds"
down_revision = "0007_service_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE kinds (
            name text PRIMARY KEY,
            description text NOT NULL DEFAULT '',
            input_schema jsonb NOT NULL DEFAULT '{}',
            stages text[] NOT NULL,
            tries integer NOT NULL CHECK (tries >= 1),
            timeout double precision NOT NULL CHECK (timeout > 0),
            queue text NOT NULL,
            concurrency integer CHECK (concurrency >= 1),
            endpoint text,
            version text NOT NULL,
            published_by text NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("ALTER TABLE jobs ADD COLUMN timeout double precision CHECK (timeout > 0)")
    op.execute("ALTER TABLE jobs ADD COLUMN concurrency_key text")
    op.execute(
        """
        CREATE INDEX jobs_concurrency_key ON jobs (kind, concurrency_key, created_at)
        WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running')
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX jobs_concurrency_key")
    op.execute("ALTER TABLE jobs DROP COLUMN concurrency_key, DROP COLUMN timeout")
    op.execute("DROP TABLE kinds")
