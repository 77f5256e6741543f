"""Reading a run's customers from PostgreSQL: every one, or the seeded sample the fit sees.

A run's customers are a relation of (customer_id, attributes): the active customers imported
under its declaration (`imported_customers`) or a table the run staged (`staging`). They are
read by COPY as text, in id order, so the row order on disk never changes the result.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import db
from segmentation.dataset import Dataset


def _copy_out(connection: Connection, statement: sql.Composable) -> io.BytesIO:
    buffer = io.BytesIO()
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    return buffer


def _frame_from_csv(buffer: io.BytesIO, dataset: Dataset, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """customer_id plus each declared column (and `extra` ones) as text (None where NULL), from COPY's CSV."""
    names = ["customer_id", *dataset.names, *extra]
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    frame = pd.read_csv(
        buffer, header=None, names=names, dtype=str, keep_default_na=False, na_values=[""], quotechar='"'
    )
    return frame.astype(object).where(frame.notna(), None)


def imported_customers(dataset_id: int, segmentation_id: int) -> sql.Composable:
    """The segmentation's active customers imported under the declaration `dataset_id`, as (customer_id, attributes)."""
    return sql.SQL(
        "(select customer_id, attributes from {} where is_active and dataset_id = {})"
    ).format(sql.SQL(db.partition("customers", segmentation_id)), sql.Literal(int(dataset_id)))


def _customers_query(dataset: Dataset, customers: sql.Composable, condition: sql.Composable = sql.SQL("true")) -> sql.Composed:
    attributes = [
        sql.SQL("attributes[{}]").format(sql.Literal(position)) for position in range(1, len(dataset.columns) + 1)
    ]
    return sql.SQL(
        "copy (select customer_id, {} from {} as customers where {} order by customer_id) to stdout with (format csv)"
    ).format(sql.SQL(", ").join(attributes), customers, condition)


def read_customers(connection: Connection, dataset: Dataset, customers: sql.Composable) -> pd.DataFrame:
    """Every customer of `customers`, a relation of (customer_id, attributes) such as
    `imported_customers` or a run's staging table (`segmentation.features.staging`), by COPY, in id order.

    Columns: customer_id (str) and each declared column as validated text (None where
    unknown); `typed_values` turns them into numbers and categories.
    """
    return _frame_from_csv(_copy_out(connection, _customers_query(dataset, customers)), dataset)


def read_active_customers(connection: Connection, dataset: Dataset, dataset_id: int, segmentation_id: int) -> pd.DataFrame:
    """The segmentation's active customers imported under the declaration `dataset_id` (see `read_customers`)."""
    return read_customers(connection, dataset, imported_customers(dataset_id, segmentation_id))


def count_active_customers(connection: Connection, dataset_id: int, segmentation_id: int) -> tuple[int, int]:
    """The segmentation's active customers imported under the declaration `dataset_id`, and those
    imported under another one (left out of the fit), in one scan."""
    mine, other = connection.exec_driver_sql(
        "select count(*) filter (where dataset_id = %s), count(*) filter (where dataset_id <> %s)"
        f" from {db.partition('customers', segmentation_id)} where is_active", (dataset_id, dataset_id)
    ).one()
    return mine, other


#: a customer is in the sample when its id's seeded 20-bit hash is below share x SAMPLE_BUCKETS
SAMPLE_BUCKETS = 1 << 20


def read_sample(
    connection: Connection, dataset: Dataset, customers: sql.Composable, size: int, n_customers: int, seed: int
) -> pd.DataFrame:
    """About `size` of the `n_customers` customers of `customers` (a relation as for
    `read_customers`; all of them when there are at most `size`), in id order.

    A customer is drawn when the hash of its id seeded with `seed` falls in the first
    `size / n_customers` of the hash range: the same customers make the same sample whatever
    their order on disk, and the server does the drawing (one scan, no sort of the table).
    """
    if n_customers <= size:
        return read_customers(connection, dataset, customers)
    threshold = int(np.ceil(SAMPLE_BUCKETS * size / n_customers))
    condition = sql.SQL("(hashtextextended(customer_id, {}) & {}) < {}").format(
        sql.Literal(int(seed)), sql.Literal(SAMPLE_BUCKETS - 1), sql.Literal(threshold)
    )
    return _frame_from_csv(_copy_out(connection, _customers_query(dataset, customers, condition)), dataset)


def _copy_out_chunks(connection: Connection, statement: sql.Composable, rows: int) -> Iterator[io.BytesIO]:
    """COPY's output in pieces of at most `rows` rows (libpq hands over one row at a time, so a
    piece never splits a row, even one whose quoted values hold line breaks). Leaving early
    cancels the COPY."""
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        buffer, count = io.BytesIO(), 0
        for row in copy:
            buffer.write(row)
            count += 1
            if count == rows:
                buffer.seek(0)
                yield buffer
                buffer, count = io.BytesIO(), 0
        if count:
            buffer.seek(0)
            yield buffer


