-- Reference copy of segmentation.current_segment_profiles (latest definition: migration 0002).
-- Editing this file changes nothing in the database: views change only by migration.
create or replace view segmentation.current_segment_profiles as
-- grain: one row per segment of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    profile.avg_age,
    profile.avg_annual_income_k,
    profile.avg_spending_score,
    profile.female_share,
    profile.recommendation,
    profile.run_id,
    latest_run.published_at,
    profile.median_age,
    profile.median_annual_income_k,
    profile.median_spending_score,
    profile.age_index,
    profile.annual_income_index,
    profile.spending_score_index,
    profile.female_share_index,
    profile.distinguishing_features,
    profile.centroid_shift,
    profile.previous_customer_count
from latest_run
join segmentation.segment_profiles as profile
    on profile.run_id = latest_run.run_id;
