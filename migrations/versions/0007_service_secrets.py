"""Secrets that exist only for the service (the signing secret of event-stream tokens,
with the previous one kept during a rotation), and dashboard sessions, so they can be
revoked.

Revision ID: 0007_service_secrets
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op

revision = "0007_service_secrets"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE service_secrets (
            name text PRIMARY KEY,
            current bytea NOT NULL,
            previous bytea,
            rotated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE dashboard_sessions (
            token_hash bytea PRIMARY KEY,
            admin_key_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE dashboard_sessions, service_secrets")
