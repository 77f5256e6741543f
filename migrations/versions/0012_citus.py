"""Distributed on Citus: the per-customer tables sharded by customer_id, the small ones everywhere.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

On a database with the citus extension (and the setting `citus` not "off", which the job
passes to its sessions as `segmentation.citus`), `segmentation.citus.ensure`:

- drops the statement triggers that count writes to `customers` and `orders` from outside the
  job (migration 0010): Citus refuses to distribute a table that has triggers. On Citus such
  writes are not counted, and the job never relies on their count;
- makes the small tables reference tables (a copy on every node);
- distributes `customers`, `orders`, `current_segments` and `segment_stretches`
  by customer_id, co-located with `customers` (their partitions follow their parent).

On a single server it changes nothing, nor does its downgrade. On a distributed schema the
downgrade refuses, before anything changes: Citus cannot turn tables with identity columns back
into plain ones. See docs/citus.md.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from segmentation import citus

    citus.ensure(op.get_bind())


def downgrade() -> None:
    from segmentation import citus

    citus.undistribute(op.get_bind())
