"""Reading recency, frequency and monetary value for a run, joined with customer attributes.

Grain: one row per customer, staged in the run's table of (customer_id, attributes) like
`segmentation_internal.customers` (`segmentation.features.staging`), so the rest of the run treats the
RFM columns like any declared column. The values come from `rfm_select`, the SQL of the
segmentation's `customer_rfm` view (set-based), as of the run's reference date: the `as_of` setting, else the day after the latest
order.

With a customer export in the declaration too, the two are joined on customer id (a full
join): a customer with attributes but no orders gets frequency 0 and monetary value 0 (its
recency and the rest are imputed like any missing value), a customer with orders but no
attributes gets its attributes imputed. Both are counted and logged, never dropped.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus, db
from segmentation.dataset import Dataset
from segmentation.features import staging

log = logging.getLogger(__name__)

#: work_mem while the run reads `customer_rfm`: its grouping sort and its three percent-rank
#: sorts (one row per customer) stay in memory instead of spilling to disk at the default 4 MB
RFM_WORK_MEM = "256MB"

#: RFM columns that are 0 for a customer without orders (the others are unknown: imputed)
ZERO_WITHOUT_ORDERS = ("frequency", "monetary")


def rfm_select(segmentation_id: int, id_type: str | None = None) -> sql.Composed:
    """The select of `customer_rfm` over one segmentation's orders: one row per customer with at
    least one purchase (a line with amount >= 0) before the reference date. The reference date is
    the session setting `segmentation.as_of` when set, else the day after the segmentation's
    latest order. `customer_id` is bigint for `id_type` "whole", else the stored text.

    Quintile scores: each customer's percent rank from worst (0) to best (1), cut into fifths
    (1 + floor(5 x rank), the best capped at 5). Tied customers share the lower rank, so the many
    one-order customers of a typical log all get F = 1 instead of being spread over 1..3 by an
    arbitrary tie-break as ntile() does.
    """
    mine = sql.Literal(int(segmentation_id))
    customer_id = sql.SQL("cast(ranked.customer_id as bigint)" if id_type == "whole" else "ranked.customer_id")
    return sql.SQL(
        """with reference as (
    select coalesce(
        cast(nullif(current_setting('segmentation.as_of', true), '') as date),
        (select cast(max(orders.ordered_at) as date) + 1 from segmentation_internal.orders as orders
         where orders.segmentation_id = {mine})
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
    where orders.segmentation_id = {mine} and orders.ordered_at < reference.as_of
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
    {customer_id} as customer_id,
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
from ranked"""
    ).format(mine=mine, customer_id=customer_id)


@dataclasses.dataclass
class RfmCustomers:
    """What staging a run's RFM customers gave: how many, the reference date and the join's mismatches."""

    n_customers: int
    as_of: datetime.date | None
    orders_without_attributes: int = 0
    attributes_without_orders: int = 0


def reference_date(
    connection: Connection, as_of: datetime.date | None, segmentation_id: int, latest: datetime.date | None = None
) -> datetime.date | None:
    """Set this transaction's reference date and return it: the `as_of` setting, else the day
    after the segmentation's latest order, but never after the day after `latest` (the last
    possible order date: lines stored from the future by an older version of the job are left out).

    None when the segmentation has no orders at all.
    """
    if as_of is not None:
        connection.exec_driver_sql("select set_config('segmentation.as_of', %s, true)", (as_of.isoformat(),))
    in_force = connection.exec_driver_sql(
        "select coalesce(cast(nullif(current_setting('segmentation.as_of', true), '') as date),"
        " (select least(cast(max(ordered_at) as date) + 1, cast(%s as date)) from segmentation_internal.orders"
        "  where segmentation_id = %s))",
        (None if latest is None else (latest + datetime.timedelta(days=1)).isoformat(), int(segmentation_id)),
    ).scalar()
    if in_force is not None:
        connection.exec_driver_sql("select set_config('segmentation.as_of', %s, true)", (in_force.isoformat(),))
    return in_force


def stage_customers(
    connection: Connection, dataset: Dataset, dataset_id: int | None, as_of: datetime.date | None, run_id: int,
    segmentation_id: int,
    latest: datetime.date | None = None,
) -> RfmCustomers:
    """Stage the run's customers with their declared columns (`segmentation.features.staging`, created
    here in the caller's transaction): attributes of active customers imported under
    `dataset_id` (when the declaration has imported columns) and RFM from `customer_rfm`, as of
    `reference_date(as_of, latest)`.

    One `create table ... as select` on the server: no customer passes through Python. Each
    value is the text COPY would give (`cast(... as text)`), so the run sees what reading the
    view would show.
    """
    in_force = reference_date(connection, as_of, segmentation_id, latest)
    rfm = sql.SQL("({}) as rfm").format(rfm_select(segmentation_id))
    connection.exec_driver_sql(f"set local work_mem = '{RFM_WORK_MEM}'")  # a constant, no data
    imported = dataset.imported()
    rfm_value = {
        name: sql.SQL("cast(coalesce(rfm.{}, 0) as text)" if name in ZERO_WITHOUT_ORDERS else "cast(rfm.{} as text)")
        .format(sql.Identifier(name))
        for name in dataset.derived
    }
    table = staging.relation(run_id)
    if imported.columns:
        db.ensure_partition(connection, "customers", segmentation_id)
        positions = {column.name: position for position, column in enumerate(imported.columns, start=1)}
        selected = [
            rfm_value[name] if name in rfm_value else sql.SQL("customer.attributes[{}]").format(sql.Literal(positions[name]))
            for name in dataset.names
        ]
        statement = sql.SQL(
            'select cast(coalesce(customer.customer_id, rfm.customer_id) as text) collate "C" as customer_id,'
            " cast(array[{columns}] as text[]) as attributes,"
            " customer.customer_id is null as has_no_attributes, rfm.customer_id is null as has_no_orders"
            " from (select customer_id, attributes from {customers}"
            "       where is_active and dataset_id = {dataset_id}) as customer"
            " full join {rfm} on rfm.customer_id = customer.customer_id"
        ).format(columns=sql.SQL(", ").join(selected), dataset_id=sql.Literal(dataset_id), rfm=rfm,
                 customers=sql.SQL(db.partition("customers", segmentation_id)))
    else:
        statement = sql.SQL(
            'select cast(rfm.customer_id as text) collate "C" as customer_id, cast(array[{columns}] as text[]) as attributes,'
            " false as has_no_attributes, false as has_no_orders from {rfm}"
        ).format(columns=sql.SQL(", ").join(rfm_value[name] for name in dataset.names), rfm=rfm)
    citus.create_table_as(connection, table, statement, unlogged=True)
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select count(*), count(*) filter (where has_no_attributes), count(*) filter (where has_no_orders) from {}"
            ).format(table)
        )
        n_customers, no_attributes, no_orders = cursor.fetchone()
    if no_attributes:
        log.warning("%d customer(s) have orders but no imported attributes: their attributes are imputed", no_attributes)
    if no_orders:
        log.warning("%d customer(s) have attributes but no orders before %s: frequency and monetary value 0,"
                    " recency imputed", no_orders, in_force)
    return RfmCustomers(int(n_customers), in_force, int(no_attributes), int(no_orders))
