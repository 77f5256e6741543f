-- Top customers per segment: the ten most typical customers of each current segment (nearest
-- to its centre, outliers left out), with every declared column, for any declaration. To rank
-- by a value column of yours instead, change the order by (the mall: spending_score desc; an
-- order log: monetary desc).
-- Chart: table filtered by segment_id or segment_name.
-- Segmentation NAME: read segments_NAME.current_customer_segments instead.
-- Grain: one row per customer (at most ten per segment).
with ranked as (
    select
        segments.*,
        row_number() over (
            partition by segments.segment_id
            order by segments.distance_to_centroid nulls last, segments.customer_id
        ) as rank_in_segment
    from segmentation.current_customer_segments as segments
    where not segments.is_outlier
)

select ranked.*
from ranked
where ranked.rank_in_segment <= 10
order by ranked.segment_id, ranked.rank_in_segment
