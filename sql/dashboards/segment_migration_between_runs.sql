-- Segment migration between the two latest published runs: who moved where.
-- Chart: table or Sankey, from_segment -> to_segment weighted by customer_count.
-- Grain: one row per (previous segment, current segment) pair with at least one customer.
with transitions as (
    select
        from_run_id,
        to_run_id,
        coalesce(from_segment_name, '(new customer)') as from_segment,
        coalesce(to_segment_name, '(no longer segmented)') as to_segment,
        customer_count,
        share_of_from_segment
    from segmentation.segment_transitions
)

select
    transitions.from_run_id,
    transitions.to_run_id,
    transitions.from_segment,
    transitions.to_segment,
    transitions.customer_count,
    round(cast(transitions.share_of_from_segment * 100 as numeric), 1) as share_of_from_segment_pct
from transitions
order by transitions.customer_count desc
