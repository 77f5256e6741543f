"""The run lock becomes a lock on a table only the job's role may lock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Any role can take any advisory lock key, so a read-only BI role could block every run (or
fake one) by holding the old advisory key. `LOCK TABLE ... IN EXCLUSIVE MODE` needs write
privileges on the table, which the reader role never gets: a run now holds an EXCLUSIVE lock
on `segmentation.run_lock` in a transaction on its own connection for the whole run.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table segmentation.run_lock (
            note text
        );
        comment on table segmentation.run_lock is
            'Holds no rows: a run holds an EXCLUSIVE lock on it (only roles that may write it can), one run at a time.';
        revoke all on segmentation.run_lock from public;
        """
    )


def downgrade() -> None:
    op.execute("drop table segmentation.run_lock")
