"""Analytics events and their daily counts; reminders and memberships the schedule acts on.

`events` is append-only and written in bulk (COPY). Its indexes serve exactly the queries
run against it: a tenant's export over a time range (tenant_id, ts), and the aggregation
and retention sweeps over all tenants by ts, for which a BRIN index is enough (rows
arrive roughly in ts order) and costs almost nothing on insert. Per-type questions are
answered from `event_counts`, never from `events`, so no (tenant, type, ts) btree is kept.
At a few hundred million rows, range-partitioning `events` by month would turn retention
into DROP PARTITION; until then batched deletes keep it simple.

`reminders.job_id` links a reminder to the notification job it became: NULL means not
sent yet. It cascades on delete, so when retention removes the job the reminder goes with
it instead of turning NULL (which would send it again).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE events (
        id bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        type text NOT NULL,
        user_id text,
        properties jsonb NOT NULL DEFAULT '{}',
        ts timestamptz NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Exports: one tenant's events over a time range, in time order.
    "CREATE INDEX ix_events_tenant_ts ON events (tenant_id, ts)",
    # Aggregation windows and retention sweeps across all tenants.
    "CREATE INDEX ix_events_ts_brin ON events USING brin (ts)",
    """
    CREATE TABLE event_counts (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        type text NOT NULL,
        day date NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (tenant_id, type, day)
    )
    """,
    # GET /v1/stats without a type: a tenant's days in order.
    "CREATE INDEX ix_event_counts_tenant_day ON event_counts (tenant_id, day)",
    """
    CREATE TABLE reminders (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        due_at timestamptz NOT NULL,
        channel text NOT NULL,
        recipients text[] NOT NULL,
        template text NOT NULL,
        data jsonb NOT NULL DEFAULT '{}',
        job_id uuid REFERENCES jobs (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # The reminders cron: unsent reminders by due time. Partial, so it stays small.
    "CREATE INDEX ix_reminders_unsent_due ON reminders (due_at) WHERE job_id IS NULL",
    """
    CREATE TABLE memberships (
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        member text NOT NULL,
        email text NOT NULL,
        data jsonb NOT NULL DEFAULT '{}',
        expires_at timestamptz NOT NULL,
        notified_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, member)
    )
    """,
    # The expiring-memberships cron: not yet notified, by expiry.
    "CREATE INDEX ix_memberships_unnotified_expires ON memberships (expires_at) WHERE notified_at IS NULL",
    # Retention: finished jobs by age, and idempotency keys by age.
    "CREATE INDEX ix_jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL",
    "CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX ix_idempotency_keys_created, ix_jobs_finished_at")
    op.execute("DROP TABLE memberships, reminders, event_counts, events")
