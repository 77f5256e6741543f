-- Reference copy of segmentation.current_customer_segments (latest definition: migration 0003).
-- Editing this file changes nothing in the database: views change only by migration.
create or replace view segmentation.current_customer_segments as
-- grain: one row per customer of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    assigned.customer_id,
    assigned.segment_id,
    profile.segment_name,
    assigned.gender,
    assigned.age,
    assigned.annual_income_k,
    assigned.spending_score,
    assigned.distance_to_centroid,
    assigned.run_id,
    latest_run.published_at,
    assigned.second_segment_id,
    assigned.margin_to_second,
    assigned.is_outlier
from latest_run
join segmentation.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segmentation.segment_profiles as profile
    on profile.run_id = assigned.run_id
    and profile.segment_id = assigned.segment_id;
