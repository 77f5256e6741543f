-- Segment migration over the last published runs: a Sankey with one column of nodes per run.
-- Chart: Sankey with source from_label, target to_label, metric sum(customer_count); filter
-- to_published_date to the period to show. Pairs whose per-customer rows were pruned
-- (setting keep_customer_rows_runs) are left out. The view has every segmentation's pairs:
-- keep the where on segmentation (or read segments_NAME.segment_transitions_history).
-- Grain: one row per (segment in a run, segment in the next published run) pair.
with transitions as (
    select
        from_run_id,
        to_run_id,
        to_published_date,
        from_label,
        to_label,
        customer_count
    from segmentation.segment_transitions_history
    where segmentation = 'default'
)

select
    transitions.to_published_date,
    transitions.from_run_id,
    transitions.to_run_id,
    transitions.from_label,
    transitions.to_label,
    transitions.customer_count
from transitions
order by transitions.from_run_id, transitions.customer_count desc
