"""Reading recency, frequency and monetary value for a run, joined with customer attributes.

Grain: one row per customer, in id order, shaped like `features.read_active_customers`
(customer_id and each declared column as text), so the rest of the run treats the RFM
columns like any declared column. The values come from the `customer_rfm` view (set-based
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

import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.dataset import Column, Dataset
from segmentation.features import _copy_out, _frame_from_csv

log = logging.getLogger(__name__)

#: work_mem while the run reads `customer_rfm`: its grouping sort and its three percent-rank
#: sorts (one row per customer) stay in memory instead of spilling to disk at the default 4 MB
RFM_WORK_MEM = "256MB"

#: RFM columns that are 0 for a customer without orders (the others are unknown: imputed)
ZERO_WITHOUT_ORDERS = ("frequency", "monetary")
#: the COPY's last two columns, read as text and dropped: which side of the join a customer lacks
JOIN_FLAGS = (Column("_no_attributes", "_no_attributes", "category", "flag"),
              Column("_no_orders", "_no_orders", "category", "flag"))


@dataclasses.dataclass
class RfmCustomers:
    """A run's customers with their RFM columns, the reference date and the join's mismatches."""

    frame: pd.DataFrame
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


def read_customers(
    connection: Connection, dataset: Dataset, dataset_id: int | None, as_of: datetime.date | None
) -> RfmCustomers:
    """Customers with their declared columns: attributes of active customers imported under
    `dataset_id` (when the declaration has imported columns) and RFM from `customer_rfm`."""
    in_force = reference_date(connection, as_of)
    connection.exec_driver_sql(f"set local work_mem = '{RFM_WORK_MEM}'")  # a constant, no data
    imported = dataset.imported()
    rfm_value = {
        name: sql.SQL("coalesce(rfm.{}, 0)" if name in ZERO_WITHOUT_ORDERS else "rfm.{}").format(sql.Identifier(name))
        for name in dataset.derived
    }
    if imported.columns:
        positions = {column.name: position for position, column in enumerate(imported.columns, start=1)}
        selected = [
            rfm_value[name] if name in rfm_value else sql.SQL("customer.attributes[{}]").format(sql.Literal(positions[name]))
            for name in dataset.names
        ]
        statement = sql.SQL(
            "copy (select coalesce(customer.customer_id, rfm.customer_id), {columns},"
            " customer.customer_id is null, rfm.customer_id is null"
            " from (select customer_id, attributes from segmentation_internal.customers"
            "       where is_active and dataset_id = {dataset_id}) as customer"
            " full join segmentation.customer_rfm as rfm on rfm.customer_id = customer.customer_id"
            " order by 1) to stdout with (format csv)"
        ).format(columns=sql.SQL(", ").join(selected), dataset_id=sql.Literal(dataset_id))
    else:
        statement = sql.SQL(
            "copy (select rfm.customer_id, {columns}, false, false from segmentation.customer_rfm as rfm"
            " order by rfm.customer_id) to stdout with (format csv)"
        ).format(columns=sql.SQL(", ").join(rfm_value[name] for name in dataset.names))
    flagged = dataclasses.replace(dataset, columns=dataset.columns + JOIN_FLAGS)
    frame = _frame_from_csv(_copy_out(connection, statement), flagged)
    no_attributes = int((frame.pop("_no_attributes") == "t").sum())
    no_orders = int((frame.pop("_no_orders") == "t").sum())
    if no_attributes:
        log.warning("%d customer(s) have orders but no imported attributes: their attributes are imputed", no_attributes)
    if no_orders:
        log.warning("%d customer(s) have attributes but no orders before %s: frequency and monetary value 0,"
                    " recency imputed", no_orders, in_force)
    return RfmCustomers(frame, in_force, no_attributes, no_orders)

