-- Reference copy of segmentation.run_history (latest definition: migration 0002).
-- Editing this file changes nothing in the database: views change only by migration.
-- The tables it reads are in schema segmentation_internal since migration 0007.
create or replace view segmentation.run_history as
-- grain: one row per run, newest first
select
    runs.run_id,
    runs.started_at,
    runs.finished_at,
    runs.status,
    runs.k,
    runs.silhouette,
    runs.n_customers,
    runs.published_at,
    runs.rationale,
    runs.features,
    runs.error,
    runs.size_psi,
    runs.max_centroid_shift,
    runs.n_outliers,
    runs.report_path
from segmentation_internal.runs as runs
order by runs.run_id desc;
