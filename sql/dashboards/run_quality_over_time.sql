-- Run quality over time: silhouette, number of segments, size drift and outliers per run,
-- with held and failed runs and their reasons.
-- Chart: line of silhouette and size_psi by started_at; table of runs whose status is not published.
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
