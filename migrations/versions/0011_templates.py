"""Tenants' own notification templates: used by name, overriding a built-in of the same
name for their tenant only.

`variables` is what the template reads from its data, found when it is stored, so a
notification missing one is refused at once without parsing the template again.

Revision ID: 0011_templates
Revises: 0010_schedules
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011_templates"
down_revision = "0010_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE templates (
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name text NOT NULL,
            channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
            subject text,
            text text NOT NULL,
            html text,
            variables text[] NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, name)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE templates")
