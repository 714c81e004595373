"""Schedules of the users' own: a job of `kind` with `input`, on a 5-field `cron` in an
IANA `timezone` or `every` so many seconds.

`next_run_at` is the tick a worker fires next; a worker claims a tick by moving it on in
the same transaction that creates the tick's job (`service.ledger.schedules.fire`), so each tick
makes one job however many workers see it due. `last_job_id` is the job of the last tick
that made one: with `overlap = 'skip'` a tick is skipped while that job is unfinished.

Revision ID: 0010_schedules
Revises: 0009_enqueue_function
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010_schedules"
down_revision = "0009_enqueue_function"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE schedules (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name text NOT NULL,
            kind text NOT NULL,
            input jsonb NOT NULL DEFAULT '{}',
            cron text,
            every integer CHECK (every >= 1),
            timezone text NOT NULL DEFAULT 'UTC',
            overlap text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow')),
            paused boolean NOT NULL DEFAULT false,
            next_run_at timestamptz NOT NULL,
            last_run_at timestamptz,
            last_job_id uuid,
            skipped_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((cron IS NULL) <> (every IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX schedules_tenant ON schedules (tenant_id, created_at)")
    op.execute("CREATE INDEX schedules_due ON schedules (next_run_at) WHERE NOT paused")


def downgrade() -> None:
    op.execute("DROP TABLE schedules")
