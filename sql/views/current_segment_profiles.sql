-- Reference copy (migration 0004, the mall's declaration). A run recreates this view from the
-- data set's declaration (segmentation/views.py): avg_/median_/_index per number, _share per
-- declared category value and boolean, as a security_barrier view (migration 0005).
-- The tables it reads are in schema segmentation_internal since migration 0007.
create view segmentation.current_segment_profiles as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
),
pivoted as (
    select
        feature.run_id,
        feature.segment_id,
        max(feature."mean") filter (where feature.feature = 'age' and feature.category is null) as "avg_age",
        max(feature."mean") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "avg_annual_income_k",
        max(feature."mean") filter (where feature.feature = 'spending_score' and feature.category is null) as "avg_spending_score",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share",
        max(feature."mean") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share",
        max(feature."median") filter (where feature.feature = 'age' and feature.category is null) as "median_age",
        max(feature."median") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "median_annual_income_k",
        max(feature."median") filter (where feature.feature = 'spending_score' and feature.category is null) as "median_spending_score",
        max(feature."index_value") filter (where feature.feature = 'age' and feature.category is null) as "age_index",
        max(feature."index_value") filter (where feature.feature = 'annual_income_k' and feature.category is null) as "annual_income_index",
        max(feature."index_value") filter (where feature.feature = 'spending_score' and feature.category is null) as "spending_score_index",
        max(feature."index_value") filter (where feature.feature = 'gender' and feature.category = 'Female') as "female_share_index",
        max(feature."index_value") filter (where feature.feature = 'gender' and feature.category = 'Male') as "male_share_index"
    from segmentation_internal.segment_features as feature
    where feature.run_id = (select run_id from latest_run)
    group by feature.run_id, feature.segment_id
)
select
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    pivoted."avg_age",
    pivoted."avg_annual_income_k",
    pivoted."avg_spending_score",
    pivoted."female_share",
    pivoted."male_share",
    profile.recommendation,
    profile.run_id,
    latest_run.published_at,
    pivoted."median_age",
    pivoted."median_annual_income_k",
    pivoted."median_spending_score",
    pivoted."age_index",
    pivoted."annual_income_index",
    pivoted."spending_score_index",
    pivoted."female_share_index",
    pivoted."male_share_index",
    profile.distinguishing_features,
    profile.centroid_shift,
    profile.previous_customer_count
from latest_run
join segmentation_internal.segment_profiles as profile
    on profile.run_id = latest_run.run_id
left join pivoted
    on pivoted.run_id = profile.run_id
    and pivoted.segment_id = profile.segment_id;
