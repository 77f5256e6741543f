-- Reference copy (migration 0004, the mall's declaration). A run recreates this view from the
-- data set's declaration (segmentation/views.py): one column per declared column, under its name,
-- as a security_barrier view (migration 0005).
-- The tables it reads are in schema segmentation_internal since migration 0007.
create view segmentation.current_customer_segments as
-- grain: one row per customer of the latest published run
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)
select
    cast(assigned.customer_id as bigint) as customer_id,
    assigned.segment_id,
    profile.segment_name,
    cast(assigned.attributes[1] as text) as "gender",
    cast(assigned.attributes[2] as bigint) as "age",
    cast(assigned.attributes[3] as numeric) as "annual_income_k",
    cast(assigned.attributes[4] as bigint) as "spending_score",
    assigned.distance_to_centroid,
    assigned.run_id,
    latest_run.published_at,
    assigned.second_segment_id,
    assigned.margin_to_second,
    assigned.is_outlier
from latest_run
join segmentation_internal.customer_segments as assigned
    on assigned.run_id = latest_run.run_id
join segmentation_internal.segment_profiles as profile
    on profile.run_id = assigned.run_id
    and profile.segment_id = assigned.segment_id;
