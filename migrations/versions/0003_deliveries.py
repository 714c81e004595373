"""The delivery log: one row per (job, channel, recipient), so a notification is sent once.

A worker marks a recipient `pending` before handing the message to the provider and
`sent` (with the provider's message id) right after, each in its own transaction. A
retry or a re-run after a crash skips what is `sent` or `failed`; only a `pending` row
(a crash between "provider accepted" and "log written") is sent again, with the same
idempotency key, which Twilio, OneSignal and webhook receivers deduplicate on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key is the uniqueness the log stands for, and its (job_id, …) prefix is
    # the index every query uses (all of a job's deliveries, or one of them).
    op.execute(
        """
        CREATE TABLE deliveries (
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
            recipient text NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
            provider text,
            provider_message_id text,
            attempts integer NOT NULL DEFAULT 0,
            last_error jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            PRIMARY KEY (job_id, channel, recipient)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE deliveries")
