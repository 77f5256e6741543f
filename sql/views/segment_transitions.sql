-- Reference copy of segmentation.segment_transitions (latest definition: migration 0003).
-- Editing this file changes nothing in the database: views change only by migration.
-- The tables it reads are in schema segmentation_internal since migration 0007.
create or replace view segmentation.segment_transitions as
-- grain: one row per (previous segment, current segment) pair between the two latest published runs
with published as (
    select
        run_id,
        row_number() over (order by published_at desc, run_id desc) as recency
    from segmentation_internal.runs
    where status = 'published'
),
current_run as (
    select run_id from published where recency = 1
),
previous_run as (
    select run_id from published where recency = 2
),
previous_assignments as (
    select customer_id, segment_id
    from segmentation_internal.customer_segments
    where run_id = (select run_id from previous_run)
),
current_assignments as (
    select customer_id, segment_id
    from segmentation_internal.customer_segments
    where run_id = (select run_id from current_run)
),
moves as (
    select
        previous_assignments.segment_id as from_segment_id,
        current_assignments.segment_id as to_segment_id,
        count(*) as customer_count
    from previous_assignments
    full join current_assignments
        on current_assignments.customer_id = previous_assignments.customer_id
    group by 1, 2
)
select
    (select run_id from previous_run) as from_run_id,
    (select run_id from current_run) as to_run_id,
    moves.from_segment_id,
    from_profile.segment_name as from_segment_name,
    moves.to_segment_id,
    to_profile.segment_name as to_segment_name,
    moves.customer_count,
    cast(moves.customer_count as double precision)
        / sum(moves.customer_count) over (partition by moves.from_segment_id) as share_of_from_segment
from moves
left join segmentation_internal.segment_profiles as from_profile
    on from_profile.run_id = (select run_id from previous_run)
    and from_profile.segment_id = moves.from_segment_id
left join segmentation_internal.segment_profiles as to_profile
    on to_profile.run_id = (select run_id from current_run)
    and to_profile.segment_id = moves.to_segment_id;
