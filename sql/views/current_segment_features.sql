-- Reference copy (migration 0004). Long format for any feature set: one row per segment x
-- feature (x category); a BI tool pivots it. A security_barrier view (migration 0005).
-- The tables it reads are in schema segmentation_internal since migration 0007.
create view segmentation.current_segment_features as
-- grain: one row per segment x feature (x category) of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    feature.segment_id,
    profile.segment_name,
    feature.feature,
    feature.label,
    feature.unit,
    feature.category,
    feature.mean,
    feature.median,
    feature.index_value as index,
    feature.level,
    feature.position,
    feature.run_id,
    latest_run.published_at
from latest_run
join segmentation_internal.segment_features as feature
    on feature.run_id = latest_run.run_id
join segmentation_internal.segment_profiles as profile
    on profile.run_id = feature.run_id
    and profile.segment_id = feature.segment_id;
