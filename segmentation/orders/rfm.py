"""Reading recency, frequency and monetary value for a run, joined with customer attributes.

Grain: one row per customer, staged in the run's table of (customer_id, attributes) like
`segmentation_internal.customers` (`segmentation.features.staging`), so the rest of the run treats the
RFM columns like any declared column. The values come from the `customer_rfm` view (set-based
SQL), as of the run's reference date: the `as_of` setting, else the day after the latest
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

from segmentation.dataset import Dataset
from segmentation.features import staging

log = logging.getLogger(__name__)

#: work_mem while the run reads `customer_rfm`: its grouping sort and its three percent-rank
#: sorts (one row per customer) stay in memory instead of spilling to disk at the default 4 MB
RFM_WORK_MEM = "256MB"

#: RFM columns that are 0 for a customer without orders (the others are unknown: imputed)
ZERO_WITHOUT_ORDERS = ("frequency", "monetary")


@dataclasses.dataclass
class RfmCustomers:
    """What staging a run's RFM customers gave: how many, the reference date and the join's mismatches."""

    n_customers: int
    as_of: datetime.date | None
    orders_without_attributes: int = 0
    attributes_without_orders: int = 0


def reference_date(connection: Connection, as_of: datetime.date | None) -> datetime.date | None:
    """Set this transaction's reference date (the `as_of` setting, if any) and return the one in force.

    None when there are no orders at all.
    """
    if as_of is not None:
        connection.exec_driver_sql("select set_config('segmentation.as_of', %s, true)", (as_of.isoformat(),))
    return connection.exec_driver_sql(
        "select coalesce(cast(nullif(current_setting('segmentation.as_of', true), '') as date),"
        " (select cast(max(ordered_at) as date) + 1 from segmentation_internal.orders))"
    ).scalar()


def stage_customers(
    connection: Connection, dataset: Dataset, dataset_id: int | None, as_of: datetime.date | None, run_id: int
) -> RfmCustomers:
    """Stage the run's customers with their declared columns (`segmentation.features.staging`, created
    here in the caller's transaction): attributes of active customers imported under
    `dataset_id` (when the declaration has imported columns) and RFM from `customer_rfm`.

    One `create table ... as select` on the server: no customer passes through Python. Each
    value is the text COPY would give (`cast(... as text)`), so the run sees what reading the
    view would show.
    """
    in_force = reference_date(connection, as_of)
    connection.exec_driver_sql(f"set local work_mem = '{RFM_WORK_MEM}'")  # a constant, no data
    imported = dataset.imported()
    rfm_value = {
        name: sql.SQL("cast(coalesce(rfm.{}, 0) as text)" if name in ZERO_WITHOUT_ORDERS else "cast(rfm.{} as text)")
        .format(sql.Identifier(name))
        for name in dataset.derived
    }
    table = staging.relation(run_id)
    if imported.columns:
        positions = {column.name: position for position, column in enumerate(imported.columns, start=1)}
        selected = [
            rfm_value[name] if name in rfm_value else sql.SQL("customer.attributes[{}]").format(sql.Literal(positions[name]))
            for name in dataset.names
        ]
        statement = sql.SQL(
            "create unlogged table {table} as"
            ' select cast(coalesce(customer.customer_id, rfm.customer_id) as text) collate "C" as customer_id,'
            " cast(array[{columns}] as text[]) as attributes,"
            " customer.customer_id is null as has_no_attributes, rfm.customer_id is null as has_no_orders"
            " from (select customer_id, attributes from segmentation_internal.customers"
            "       where is_active and dataset_id = {dataset_id}) as customer"
            " full join segmentation.customer_rfm as rfm on rfm.customer_id = customer.customer_id"
        ).format(table=table, columns=sql.SQL(", ").join(selected), dataset_id=sql.Literal(dataset_id))
    else:
        statement = sql.SQL(
            "create unlogged table {table} as"
            ' select cast(rfm.customer_id as text) collate "C" as customer_id, cast(array[{columns}] as text[]) as attributes,'
            " false as has_no_attributes, false as has_no_orders from segmentation.customer_rfm as rfm"
        ).format(table=table, columns=sql.SQL(", ").join(rfm_value[name] for name in dataset.names))
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(statement)
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
