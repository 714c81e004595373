"""Idempotency-Key for POSTs that create no job: the answer given is kept with the key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN response jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys DROP COLUMN response")
