"""`conveyor_hold_key`: a concurrency key's advisory lock and its running count, in one call.

A claim of jobs with a concurrency key (service/ledger/concurrency.py) must count a key's
running jobs only once it holds the key's lock, in a snapshot taken after the lock was
granted. In PL/pgSQL each statement takes a new snapshot, so this function locks, then
counts in a statement of its own; called from the claim statement, it makes a keyed
claim one round trip instead of three (BEGIN with the locks, the claim, COMMIT). The lock
is transaction-scoped: it goes when the claim's implicit transaction commits.

Revision ID: 0014_concurrency_hold
Revises: 0013_builtin_schedules
Create Date: 2026-12-07
"""

from alembic import op

revision = "0014_concurrency_hold"
down_revision = "0013_builtin_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION conveyor_hold_key(key_kind text, key text, claiming uuid[]) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended(key_kind || chr(31) || key, 7));
            RETURN (SELECT count(*) FROM jobs
                    WHERE kind = key_kind AND concurrency_key = key AND status = 'running'
                          AND id <> ALL(claiming));
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION conveyor_hold_key(text, text, uuid[])")
