-- Reference copy (migration 0004, the mall's declaration). A run recreates this view from the
-- data set's declaration (segmentation/views.py), as a security_barrier view (migration 0005).
-- The tables it reads are in schema segmentation_internal since migration 0007.
create view segmentation.segment_profile_history as
-- grain: one row per segment of every published run, oldest first
with pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(feature."mean") filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(feature."mean") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(feature."mean") filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share"
    from segmentation_internal.segment_features as feature
    group by feature.run_id, feature.segment_id
)
select
    runs.run_id,
    runs.published_at,
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    profile.centroid_shift
from segmentation_internal.runs as runs
join segmentation_internal.segment_profiles as profile
    on profile.run_id = runs.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id
where runs.status = 'published'
order by runs.published_at, runs.run_id, profile.segment_id;
