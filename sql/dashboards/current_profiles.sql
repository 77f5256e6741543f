-- Profiles of the current run: one row per segment with its size, averages, what sets it
-- apart and the recommended action, for any declaration: the view's columns are the segment
-- columns and, per declared column, avg_<column> (numbers) or <column>_<value>_share_pct
-- (categories), so select * keeps whatever the declaration has (the mall's: avg_age,
-- avg_annual_income_k, avg_spending_score, female_share_pct; an order log's: avg_recency_days,
-- avg_frequency, avg_monetary, ...).
-- Chart: table, or bar chart of customer_share_pct by segment_id and segment_name, sorted by
-- segment_order, coloured by segment_color.
-- Segmentation NAME: read segments_NAME.current_segment_profiles instead.
-- Grain: one row per segment of the latest published run.
with profiles as (
    select *
    from segmentation.current_segment_profiles
)

select profiles.*
from profiles
order by profiles.segment_order
