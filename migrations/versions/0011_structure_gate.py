"""The health gate's reference and a forced publish on record.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- `runs.forced_reason`: set when `--force-publish` published a run the health gate would have
  held: what it would have held it for. `run_history` shows it (its last column).
- `k_evaluations` gains the silhouette of each k on the reference (the data with each feature
  shuffled on its own: mean and largest over the reference sets) and the gain of
  the data's silhouette over it, on which k is chosen and structure judged.

The views are generated (segmentation.publish.views): the upgrade to head recreates those whose
SQL changed (`run_history` with its new column; the declared averages, which now show more
decimals where two segments' values would otherwise look the same). The downgrade drops every
segmentation's views first, since they read the columns it drops; the job of revision 0010
recreates them on its next run.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FORCED_COMMENT = ("Set when --force-publish published a run that the health gate would have held: what it would"
                  " have held it for (null otherwise).")


def upgrade() -> None:
    op.execute("alter table segmentation_internal.runs add column forced_reason text")
    op.execute(f"comment on column segmentation_internal.runs.forced_reason is '{FORCED_COMMENT}'")
    op.execute(
        """
        alter table segmentation_internal.k_evaluations
            add column reference_silhouette double precision,
            add column reference_silhouette_max double precision,
            add column silhouette_gain double precision;
        comment on column segmentation_internal.k_evaluations.reference_silhouette is
            'Mean silhouette of the same k on the reference sets: the data with each feature shuffled on its own.';
        comment on column segmentation_internal.k_evaluations.reference_silhouette_max is
            'Largest of those silhouettes over the reference sets: a structured data set beats every one.';
        comment on column segmentation_internal.k_evaluations.silhouette_gain is
            'silhouette minus reference_silhouette: what the data holds beyond structureless data (k is chosen on it).';
        """
    )


def downgrade() -> None:
    from segmentation.publish import views

    views.drop_every(op.get_bind())
    op.execute(
        "alter table segmentation_internal.k_evaluations drop column reference_silhouette,"
        " drop column reference_silhouette_max, drop column silhouette_gain"
    )
    op.execute("alter table segmentation_internal.runs drop column forced_reason")
