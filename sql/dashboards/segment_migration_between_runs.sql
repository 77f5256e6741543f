-- Segment migration between the two latest published runs: who moved where.
-- Chart: Sankey with source from_label, target to_label, metric sum(customer_count); or a table.
-- Labels carry the run ('run 12: High income, high spending'), so no node is on both sides;
-- customers new in the latest run come from '(new customers)', those gone from it go to '(left)'.
-- Grain: one row per (previous segment, current segment) pair with at least one customer.
with transitions as (
    select
        from_run_id,
        to_run_id,
        from_label,
        to_label,
        customer_count,
        share_of_from_segment_pct
    from segmentation.segment_transitions
)

select
    transitions.from_run_id,
    transitions.to_run_id,
    transitions.from_label,
    transitions.to_label,
    transitions.customer_count,
    transitions.share_of_from_segment_pct
from transitions
order by transitions.customer_count desc
