-- Reference copy of segmentation.customer_rfm (latest definition: migration 0006).
-- Editing this file changes nothing in the database: views change only by migration.
-- The tables it reads are in schema segmentation_internal since migration 0007.
create view segmentation.customer_rfm with (security_barrier = true) as
-- grain: one row per customer with at least one purchase (a line with amount >= 0) before as_of
with reference as (
    select coalesce(
        cast(nullif(current_setting('segmentation.as_of', true), '') as date),
        (select cast(max(orders.ordered_at) as date) + 1 from segmentation_internal.orders as orders)
    ) as as_of
),
per_customer as (
    select
        orders.customer_id,
        min(orders.ordered_at) filter (where orders.amount >= 0) as first_order_at,
        max(orders.ordered_at) filter (where orders.amount >= 0) as last_order_at,
        count(distinct orders.order_id) filter (where orders.amount >= 0)
            + count(*) filter (where orders.order_id is null and orders.amount >= 0) as frequency,
        sum(orders.amount) as monetary
    from segmentation_internal.orders as orders
    cross join reference
    where orders.ordered_at < reference.as_of
    group by orders.customer_id
),
measured as (
    select
        per_customer.customer_id,
        reference.as_of,
        per_customer.first_order_at,
        per_customer.last_order_at,
        reference.as_of - cast(per_customer.last_order_at as date) as recency_days,
        per_customer.frequency,
        per_customer.monetary,
        round(per_customer.monetary / per_customer.frequency, 2) as average_order_value,
        reference.as_of - cast(per_customer.first_order_at as date) as tenure_days
    from per_customer
    cross join reference
    where per_customer.frequency > 0
),
ranked as (
    select
        measured.*,
        percent_rank() over (order by measured.recency_days desc) as recency_position,
        percent_rank() over (order by measured.frequency) as frequency_position,
        percent_rank() over (order by measured.monetary) as monetary_position
    from measured
)
select
    ranked.customer_id,
    ranked.as_of,
    ranked.first_order_at,
    ranked.last_order_at,
    ranked.recency_days,
    ranked.frequency,
    ranked.monetary,
    ranked.average_order_value,
    ranked.tenure_days,
    cast(least(5, 1 + floor(5 * ranked.recency_position)) as smallint) as r_score,
    cast(least(5, 1 + floor(5 * ranked.frequency_position)) as smallint) as f_score,
    cast(least(5, 1 + floor(5 * ranked.monetary_position)) as smallint) as m_score
from ranked;
