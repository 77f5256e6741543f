"""The run lock becomes a lock on a table only the job's role may lock; views become security barriers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Any role can take any advisory lock key, so a read-only BI role could block every run (or
fake one) by holding the old advisory key. `LOCK TABLE ... IN EXCLUSIVE MODE` needs write
privileges on the table, which the reader role never gets: a run now holds an EXCLUSIVE lock
on `segmentation.run_lock` in a transaction on its own connection for the whole run.

Every view the reader role may select becomes a `security_barrier` view: without it, a
reader's own (leaky) function in a WHERE clause is evaluated on rows of held and older runs
before the view's filter to the latest published run, and can print them.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


READER_VIEWS = (
    "current_customer_segments",
    "current_segment_profiles",
    "current_segment_features",
    "run_history",
    "segment_transitions",
    "segment_profile_history",
)


def upgrade() -> None:
    for view in READER_VIEWS:
        op.execute(f"alter view segmentation.{view} set (security_barrier = true)")
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
    for view in READER_VIEWS:
        op.execute(f"alter view segmentation.{view} reset (security_barrier)")
