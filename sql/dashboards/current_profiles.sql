-- Profiles of the current run: one card per segment with its size, averages, what sets it
-- apart and the recommended action.
-- Chart: table, or bar chart of customer_share by segment_name.
-- Grain: one row per segment of the latest published run.
with profiles as (
    select
        segment_id,
        segment_name,
        customer_count,
        customer_share,
        avg_age,
        avg_annual_income_k,
        avg_spending_score,
        female_share,
        distinguishing_features,
        recommendation,
        run_id,
        published_at
    from segmentation.current_segment_profiles
)

select
    profiles.segment_id,
    profiles.segment_name,
    profiles.customer_count,
    round(cast(profiles.customer_share * 100 as numeric), 1) as customer_share_pct,
    round(cast(profiles.avg_age as numeric), 1) as avg_age,
    round(cast(profiles.avg_annual_income_k as numeric), 1) as avg_annual_income_k,
    round(cast(profiles.avg_spending_score as numeric), 1) as avg_spending_score,
    round(cast(profiles.female_share * 100 as numeric), 1) as female_share_pct,
    profiles.distinguishing_features,
    profiles.recommendation,
    profiles.run_id,
    profiles.published_at
from profiles
order by profiles.customer_count desc
