"""Workflows: steps of jobs that start when the steps they come after have succeeded.

A workflow's steps are rows of `workflow_steps`; each knows its unfinished jobs
(`remaining`) and how many of them failed, so the transaction that ends a step's last
job ends the step and starts the steps after it (service/ledger/workflows.py), under the step's
row lock: a step starts once even when its parents end together on different workers.
`cascaded` marks a step cancelled because a step upstream of it failed, so retrying that
step's failed job can bring it back. A step's jobs are ordinary jobs naming their workflow.

Revision ID: 0012_workflows
Revises: 0011_templates
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012_workflows"
down_revision = "0011_templates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE workflows (
            id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            cancel_requested boolean NOT NULL DEFAULT false,
            metadata jsonb NOT NULL DEFAULT '{}',
            callback_url text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX workflows_tenant ON workflows (tenant_id, created_at)")
    op.execute(
        """
        CREATE TABLE workflow_steps (
            workflow_id uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
            name text NOT NULL,
            position integer NOT NULL,
            kind text NOT NULL,
            spec jsonb NOT NULL,
            input jsonb NOT NULL,
            after text[] NOT NULL DEFAULT '{}',
            for_each jsonb,
            status text NOT NULL CHECK (status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled')),
            cascaded boolean NOT NULL DEFAULT false,
            remaining integer NOT NULL DEFAULT 0,
            failed integer NOT NULL DEFAULT 0,
            job_ids uuid[] NOT NULL DEFAULT '{}',
            error jsonb,
            PRIMARY KEY (workflow_id, name)
        )
        """
    )
    op.execute("ALTER TABLE jobs ADD COLUMN workflow_id uuid, ADD COLUMN workflow_step text")
    op.execute("CREATE INDEX jobs_workflow ON jobs (workflow_id) WHERE workflow_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX jobs_workflow")
    op.execute("ALTER TABLE jobs DROP COLUMN workflow_step, DROP COLUMN workflow_id")
    op.execute("DROP TABLE workflow_steps")
    op.execute("DROP TABLE workflows")
