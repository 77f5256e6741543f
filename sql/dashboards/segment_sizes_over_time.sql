-- Segment sizes over time: customers per segment, one published run per day (the day's last).
-- Chart: line or stacked area, x = published_date (a time axis), y = customer_count, series =
-- segment ("S3 High income, low spending": id and full name, unlike segment_label, which stops
-- at the first comma), colours from segment_color. Without the is_latest_of_day filter a daily
-- grain would add up two runs published on the same day.
-- The view has every segmentation's rows: keep the where on segmentation (or read
-- segments_NAME.segment_profile_history for segmentation NAME).
-- Grain: one row per day with a published run and segment.
with history as (
    select
        run_id,
        published_date,
        segment_id,
        segment_name,
        segment_color,
        customer_count,
        customer_share_pct
    from segmentation.segment_profile_history
    where is_latest_of_day
        and segmentation = 'default'
)

select
    history.published_date,
    history.run_id,
    history.segment_id,
    'S' || history.segment_id || ' ' || history.segment_name as segment,
    history.segment_color,
    history.customer_count,
    history.customer_share_pct
from history
order by history.published_date, history.segment_id
