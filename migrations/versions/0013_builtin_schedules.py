"""Built-in schedules: the worker's own periodic jobs (reminders, cleanup, …) as rows of
`schedules`, fired like the users' ones.

`builtin` names a built-in schedule (NULL for a user's); there is one row per name,
which workers upsert at start (service/ledger/schedules.py `seed`). `setting` is the
`SCHEDULE_*` value the row was last seeded from: a changed setting is applied once, at
the next start, and otherwise what the admin changed through the API stands.

Revision ID: 0013_builtin_schedules
Revises: 0012_workflows
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013_builtin_schedules"
down_revision = "0012_workflows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE schedules ADD COLUMN builtin text UNIQUE, ADD COLUMN setting text")


def downgrade() -> None:
    op.execute("DELETE FROM schedules WHERE builtin IS NOT NULL")
    op.execute("ALTER TABLE schedules DROP COLUMN builtin, DROP COLUMN setting")
