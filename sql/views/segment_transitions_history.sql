-- Reference copy of segmentation.segment_transitions_history (latest definition: migration 0008).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.segment_transitions_history with (security_barrier = true) as
-- grain: one row per (segment in a published run, segment in the next published run) pair, for every pair of consecutive published runs whose per-customer rows are kept
with published as (
    select
        runs.run_id,
        runs.published_at,
        lag(runs.run_id) over (order by runs.published_at, runs.run_id) as previous_run_id
    from segmentation_internal.runs as runs
    where runs.status = 'published'
),
run_pairs as (
    select
        published.previous_run_id as from_run_id,
        published.run_id as to_run_id,
        published.published_at as to_published_at
    from published
    where published.previous_run_id is not null
    and exists (
        select 1 from segmentation_internal.customer_segments as kept where kept.run_id = published.previous_run_id
    )
    and exists (
        select 1 from segmentation_internal.customer_segments as kept where kept.run_id = published.run_id
    )
),
moves as (
    select
        run_pairs.from_run_id,
        run_pairs.to_run_id,
        run_pairs.to_published_at,
        pair_moves.from_segment_id,
        pair_moves.to_segment_id,
        count(*) as customer_count
    from run_pairs
    cross join lateral (
        select
            previous_assignments.segment_id as from_segment_id,
            current_assignments.segment_id as to_segment_id
        from (
            select customer_id, segment_id
            from segmentation_internal.customer_segments
            where run_id = run_pairs.from_run_id
        ) as previous_assignments
        full join (
            select customer_id, segment_id
            from segmentation_internal.customer_segments
            where run_id = run_pairs.to_run_id
        ) as current_assignments
            on current_assignments.customer_id = previous_assignments.customer_id
    ) as pair_moves
    group by 1, 2, 3, 4, 5
),
named as (
    select
        moves.*,
        coalesce(from_profile.segment_name, '(new customers)') as from_segment_name,
        coalesce(to_profile.segment_name, '(left)') as to_segment_name,
        -- the pair's columns in the partition let a filter on to_run_id or the date reach run_pairs
        cast(moves.customer_count as double precision) / sum(moves.customer_count) over (
            partition by moves.from_run_id, moves.to_run_id, moves.to_published_at, moves.from_segment_id
        ) as share_of_from_segment
    from moves
    left join segmentation_internal.segment_profiles as from_profile
        on from_profile.run_id = moves.from_run_id
        and from_profile.segment_id = moves.from_segment_id
    left join segmentation_internal.segment_profiles as to_profile
        on to_profile.run_id = moves.to_run_id
        and to_profile.segment_id = moves.to_segment_id
)
select
    named.from_run_id,
    named.to_run_id,
    named.from_segment_id,
    named.from_segment_name,
    named.to_segment_id,
    named.to_segment_name,
    'run ' || named.from_run_id || ': ' || named.from_segment_name as from_label,
    'run ' || named.to_run_id || ': ' || named.to_segment_name as to_label,
    named.customer_count,
    named.share_of_from_segment,
    round(cast(named.share_of_from_segment * 100 as numeric), 1) as share_of_from_segment_pct,
    named.to_published_at,
    cast(named.to_published_at as date) as to_published_date
from named;
