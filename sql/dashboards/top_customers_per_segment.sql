-- Top customers per segment: the ten highest spending scores in each current segment,
-- with how firmly they belong (margin to the second-nearest segment).
-- Chart: table filtered by segment_name.
-- Grain: one row per customer (at most ten per segment).
with ranked as (
    select
        customer_id,
        segment_id,
        segment_name,
        annual_income_k,
        spending_score,
        margin_to_second,
        is_outlier,
        row_number() over (
            partition by segment_id
            order by spending_score desc nulls last, annual_income_k desc nulls last, customer_id
        ) as rank_in_segment
    from segmentation.current_customer_segments
)

select
    ranked.segment_id,
    ranked.segment_name,
    ranked.rank_in_segment,
    ranked.customer_id,
    ranked.annual_income_k,
    ranked.spending_score,
    ranked.margin_to_second,
    ranked.is_outlier
from ranked
where ranked.rank_in_segment <= 10
order by ranked.segment_id, ranked.rank_in_segment
