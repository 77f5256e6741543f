-- Segment sizes over time: customers per segment, one published run per day (the day's last).
-- Chart: line or stacked area, x = published_date, y = customer_count, series = segment_label,
-- colours from segment_color. Without the is_latest_of_day filter a daily grain would add up
-- two runs published on the same day.
-- Grain: one row per day with a published run and segment.
with history as (
    select
        run_id,
        published_date,
        segment_id,
        segment_label,
        segment_color,
        customer_count,
        customer_share_pct
    from segmentation.segment_profile_history
    where is_latest_of_day
)

select
    history.published_date,
    history.run_id,
    history.segment_id,
    history.segment_label,
    history.segment_color,
    history.customer_count,
    history.customer_share_pct
from history
order by history.published_date, history.segment_id
