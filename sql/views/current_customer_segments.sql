-- Reference copy (migration 0008, the mall's declaration). A run recreates this view from the
-- data set's declaration (segmentation/views.py): one column per declared column, under its name.
create view segmentation.current_customer_segments with (security_barrier = true) as
-- grain: one row per customer of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
segments as materialized (
    select
        profile.run_id,
        profile.segment_id,
        profile.segment_name,
        regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
        cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
        (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color
    from segmentation_internal.segment_profiles as profile
    where profile.run_id = (select run_id from latest_run)
)
select
    cast(assigned.customer_id as bigint) as customer_id,
    assigned.segment_id,
    segments.segment_name,
    segments.segment_label,
    segments.segment_order,
    segments.segment_color,
    cast(assigned.attributes[1] as text) as "gender",
    cast(assigned.attributes[2] as bigint) as "age",
    cast(assigned.attributes[3] as numeric) as "annual_income_k",
    cast(assigned.attributes[4] as bigint) as "spending_score",
    assigned.distance_to_centroid,
    assigned.run_id,
    latest_run.published_at,
    cast(latest_run.published_at as date) as published_date,
    assigned.second_segment_id,
    assigned.margin_to_second,
    assigned.is_outlier
from latest_run
join segmentation_internal.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segments
    on segments.segment_id = assigned.segment_id;
