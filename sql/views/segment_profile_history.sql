-- Reference copy (migration 0008, the mall's declaration). A run recreates this view from the
-- data set's declaration (segmentation/views.py): averages, shares and percentages as in current_segment_profiles.
create view segmentation.segment_profile_history with (security_barrier = true) as
-- grain: one row per segment of every published run, oldest first
with published as (
    select
        runs.run_id,
        runs.published_at,
        cast(runs.published_at as date) as published_date,
        row_number() over (partition by cast(runs.published_at as date) order by runs.published_at desc, runs.run_id desc) = 1 as is_latest_of_day
    from segmentation_internal.runs as runs
    where runs.status = 'published'
),
features as (
    select
        feature.*,
        coalesce(greatest(1, 2 - cast(floor(log(nullif(max(abs(feature.mean)) over (partition by feature.run_id, feature.feature, feature.category), 0))) as integer)), 1) as decimals
    from segmentation_internal.segment_features as feature
    where feature.run_id in (select run_id from published)
),
pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(cast(round(cast(feature.mean as numeric), feature.decimals) as double precision)) filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature.mean) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_pct",
        max(round(cast(feature.mean * 100 as numeric), 1)) filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_pct"
    from features as feature
    group by feature.run_id, feature.segment_id
)
select
    published.run_id,
    published.published_at,
    published.published_date,
    published.is_latest_of_day,
    profile.segment_id,
    profile.segment_name,
    regexp_replace('S' || profile.segment_id || ' ' || split_part(profile.segment_name, ',', 1), '^(.{19}).{2,}$', '\1…') as segment_label,
    cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,
    (array['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'])[((profile.segment_id - 1) % 20 + 20) % 20 + 1] as segment_color,
    profile.customer_count,
    profile.customer_share,
    round(cast(profile.customer_share * 100 as numeric), 1) as customer_share_pct,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    pivoted."female_share_pct",
    pivoted."male_share_pct",
    profile.centroid_shift
from published
join segmentation_internal.segment_profiles as profile
    on profile.run_id = published.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
order by published.published_at, published.run_id, profile.segment_id;
