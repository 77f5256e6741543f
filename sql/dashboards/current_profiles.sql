-- Profiles of the current run: one card per segment with its size, averages, what sets it
-- apart and the recommended action.
-- Chart: table, or bar chart of customer_share_pct by segment_label, sorted by segment_order,
-- coloured by segment_color.
-- Grain: one row per segment of the latest published run.
with profiles as (
    select
        segment_id,
        segment_name,
        segment_label,
        segment_order,
        segment_color,
        customer_count,
        customer_share_pct,
        avg_age,
        avg_annual_income_k,
        avg_spending_score,
        female_share_pct,
        distinguishing_features,
        recommendation,
        run_id,
        published_date
    from segmentation.current_segment_profiles
)

select
    profiles.segment_id,
    profiles.segment_name,
    profiles.segment_label,
    profiles.segment_color,
    profiles.customer_count,
    profiles.customer_share_pct,
    profiles.avg_age,
    profiles.avg_annual_income_k,
    profiles.avg_spending_score,
    profiles.female_share_pct,
    profiles.distinguishing_features,
    profiles.recommendation,
    profiles.run_id,
    profiles.published_date
from profiles
order by profiles.segment_order
