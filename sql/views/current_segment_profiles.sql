-- Reference copy of segmentation.current_segment_profiles (created by migration 0001).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.current_segment_profiles as
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
    latest_run.published_at
from latest_run
join segmentation.segment_profiles as profile
    on profile.run_id = latest_run.run_id;
