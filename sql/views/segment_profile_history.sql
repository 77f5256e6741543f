-- Reference copy of segmentation.segment_profile_history (latest definition: migration 0003).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.segment_profile_history as
-- grain: one row per segment of every published run, oldest first
select
    runs.run_id,
    runs.published_at,
    profile.segment_id,
    profile.segment_name,
    profile.customer_count,
    profile.customer_share,
    profile.avg_age,
    profile.avg_annual_income_k,
    profile.avg_spending_score,
    profile.female_share,
    profile.centroid_shift
from segmentation.runs as runs
join segmentation.segment_profiles as profile
    on profile.run_id = runs.run_id
where runs.status = 'published'
order by runs.published_at, runs.run_id, profile.segment_id;
