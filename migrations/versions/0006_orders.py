"""Order logs: the orders table, the customer_rfm view, and the run's reference date.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

What most retailers have is a log of orders, not a table of customer attributes. Order lines
go into `segmentation.orders` (one row per accepted line; a return is a line with a negative
amount). `segmentation.customer_rfm` derives recency, frequency and monetary value per
customer by set-based SQL, as of a reference date: the session setting `segmentation.as_of`
when set (a run sets it from its `as_of` setting), else the day after the latest order, so a
replayed historical log still gives meaningful recency. Runs record that date (`as_of`) and
the order batch they imported (`orders_batch_id`); batches say what they imported (`kind`)
and how many stored lines a file that restates its orders replaced (`rows_removed`).

The view's SQL is copied here (not imported from `sql/`) so that editing the reference copy
later cannot rewrite history.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# Quintile scores: each customer's percent rank from worst (0) to best (1), cut into fifths
# (1 + floor(5 x rank), the best capped at 5). Tied customers share the lower rank, so the many
# one-order customers of a typical log all get F = 1 instead of being spread over 1..3 by an
# arbitrary tie-break as ntile() does; with ten distinct customers the scores are 1,1,2,2,...,5,5.
CUSTOMER_RFM = """
create view segmentation.customer_rfm with (security_barrier = true) as
-- grain: one row per customer with at least one purchase (a line with amount >= 0) before as_of
with reference as (
    select coalesce(
        cast(nullif(current_setting('segmentation.as_of', true), '') as date),
        (select cast(max(orders.ordered_at) as date) + 1 from segmentation.orders as orders)
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
    from segmentation.orders as orders
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
from ranked
"""

COMMENTS = """
comment on view segmentation.customer_rfm is
    'Grain: one row per customer with at least one purchase before as_of. Recency, frequency and monetary value (RFM) from segmentation.orders. As of the session setting segmentation.as_of when set (set segmentation.as_of = ''2024-01-01''), else the day after the latest order.';
comment on column segmentation.customer_rfm.customer_id is 'The customer id as in the order export (text).';
comment on column segmentation.customer_rfm.as_of is 'Reference date: orders before it count; recency and tenure are measured to it.';
comment on column segmentation.customer_rfm.first_order_at is 'First purchase (a line with amount >= 0).';
comment on column segmentation.customer_rfm.last_order_at is 'Latest purchase before as_of (returns do not count).';
comment on column segmentation.customer_rfm.recency_days is 'Days from the latest purchase to as_of (1 = the day before as_of).';
comment on column segmentation.customer_rfm.frequency is 'Distinct orders with a purchase: distinct order ids, each line without an order id counting as one order.';
comment on column segmentation.customer_rfm.monetary is 'Net amount of all lines before as_of, returns (negative amounts) subtracted (currency).';
comment on column segmentation.customer_rfm.average_order_value is 'monetary / frequency (currency).';
comment on column segmentation.customer_rfm.tenure_days is 'Days from the first purchase to as_of.';
"""


#: reference copies in sql/views/ must match (tests/integration/test_migrations.py)
VIEW_SQL = {"customer_rfm": CUSTOMER_RFM}

SCORES = "".join(
    f"comment on column segmentation.customer_rfm.{letter}_score is"
    f" '{measure} quintile 1-5, 5 = {best} fifth; ties share the lower score.';\n"
    for letter, measure, best in (("r", "Recency", "most recent"), ("f", "Frequency", "most frequent"),
                                  ("m", "Monetary", "highest-value"))
)


def upgrade() -> None:
    op.execute(
        """
        -- one row per accepted order line; batch ids carry no foreign key (a per-row check
        -- would slow a 10M-line load as it did for customers), and no index: the RFM view
        -- reads every line once, and an index would slow the load it does not speed up
        create table segmentation.orders (
            customer_id text collate "C" not null,
            order_id text,
            ordered_at timestamp not null,
            amount numeric not null,
            quantity numeric,
            unit_price numeric,
            batch_id bigint not null
        );
        comment on table segmentation.orders is
            'Order lines imported by segment import-orders; a return or cancellation is a line with a negative amount.';

        alter table segmentation.import_batches
            add column kind text not null default 'customers' check (kind in ('customers', 'orders')),
            add column rows_removed bigint not null default 0;
        comment on column segmentation.import_batches.rows_removed is
            'Order lines removed because the file restates their order (same order id) without them.';

        alter table segmentation.runs
            add column as_of date,
            add column orders_batch_id bigint references segmentation.import_batches (batch_id);
        comment on column segmentation.runs.as_of is 'Reference date of the RFM values the run segmented on.';
        """
    )
    op.execute(CUSTOMER_RFM)
    op.execute(COMMENTS + SCORES)
    op.execute("grant select on segmentation.customer_rfm to segmentation_reader")


def downgrade() -> None:
    op.execute("drop view segmentation.customer_rfm")
    op.execute(
        """
        alter table segmentation.runs drop column orders_batch_id, drop column as_of;
        alter table segmentation.import_batches drop column rows_removed, drop column kind;
        drop table segmentation.orders;
        """
    )
