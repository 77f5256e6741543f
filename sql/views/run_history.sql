-- Reference copy of segmentation.run_history (created by migration 0001).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.run_history as
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
    runs.error
from segmentation.runs as runs
order by runs.run_id desc;
