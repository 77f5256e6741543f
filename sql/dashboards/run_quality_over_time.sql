-- Run quality over time: silhouette, number of segments, size drift and outliers per run,
-- with held and failed runs and their reasons.
-- Chart: silhouette and size_psi by started_at on two axes (their scales differ: silhouette
-- -1..1, PSI from 0 up; a run is held above max_size_psi, 0.25 by default), status as the
-- series so held runs stand out; table of runs whose status is not published.
-- The view has every segmentation's runs: keep the where on segmentation (or read
-- segments_NAME.run_history for segmentation NAME).
-- Grain: one row per run.
with runs as (
    select
        run_id,
        started_at,
        finished_at,
        status,
        k,
        silhouette,
        n_customers,
        size_psi,
        n_outliers,
        error
    from segmentation.run_history
    where segmentation = 'default'
)

select
    runs.run_id,
    runs.started_at,
    runs.status,
    runs.k,
    runs.silhouette,
    runs.n_customers,
    runs.size_psi,
    runs.n_outliers,
    extract(epoch from runs.finished_at - runs.started_at) as duration_seconds,
    runs.error as reason
from runs
order by runs.started_at
