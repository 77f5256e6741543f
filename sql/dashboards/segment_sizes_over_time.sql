-- Segment sizes over time: customers per segment in every published run.
-- Chart: line or stacked area, x = published_at, y = customer_count, series = segment_name.
-- Grain: one row per published run and segment.
with history as (
    select
        run_id,
        published_at,
        segment_id,
        segment_name,
        customer_count,
        customer_share
    from segmentation.segment_profile_history
)

select
    history.published_at,
    history.run_id,
    history.segment_id,
    history.segment_name,
    history.customer_count,
    round(cast(history.customer_share * 100 as numeric), 1) as customer_share_pct
from history
order by history.published_at, history.segment_id
