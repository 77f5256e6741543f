-- Reference copy of segmentation.current_segment_features (latest definition: migration 0008).
-- Long format for any feature set: one row per segment x feature (x category); a BI tool pivots it.
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.current_segment_features with (security_barrier = true) as
-- grain: one row per segment x feature (x category) of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
features as (
    select
        feature.*,
        coalesce(greatest(1, 2 - cast(floor(log(nullif(max(abs(feature.mean)) over (partition by feature.run_id, feature.feature, feature.category), 0))) as integer)), 1) as decimals
    from segmentation_internal.segment_features as feature
    where feature.run_id = (select run_id from latest_run)
)
select
    feature.segment_id,
    profile.segment_name,
    regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
    cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
    (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color,
    feature.feature,
    feature.label,
    feature.unit,
    feature.category,
    cast(round(cast(feature.mean as numeric), feature.decimals) as double precision) as mean,
    case when feature.category is not null then round(cast(feature.mean * 100 as numeric), 1) end as share_pct,
    cast(round(cast(feature.median as numeric), feature.decimals) as double precision) as median,
    cast(round(cast(feature.index_value as numeric), 0) as double precision) as index,
    feature.level,
    feature.position,
    feature.run_id,
    latest_run.published_at,
    cast(latest_run.published_at as date) as published_date
from latest_run
join features as feature
    on feature.run_id = latest_run.run_id
join segmentation_internal.segment_profiles as profile
    on profile.run_id = feature.run_id
    and profile.segment_id = feature.segment_id;
