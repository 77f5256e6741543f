-- Reference copy of segmentation.run_history (latest definition: migration 0008).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.run_history with (security_barrier = true) as
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
    cast(runs.published_at as date) as published_date,
    runs.rationale,
    runs.features,
    runs.error,
    runs.size_psi,
    runs.max_centroid_shift,
    runs.n_outliers
from segmentation_internal.runs as runs
order by runs.run_id desc;
