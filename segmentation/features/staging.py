"""A run's customers staged in PostgreSQL when they do not come from `customers`.

A `source` table and the orders (RFM) path give customers that are not rows of
`segmentation_internal.customers`. Rather than holding them in client memory, the read stage
writes them into one table per run, `segmentation_internal.run_customers_r{run_id}` of
(customer_id text collate "C", attributes text[] in declaration order), the shape
`segmentation_internal.customers` has: counting, the seeded sample and the SQL assignment then
read it exactly as they read imported customers.

The table is unlogged (a staging copy that a server crash may empty: the run dies with the
crash anyway) and not temporary, so that the publish transaction, on another connection, and
PostgreSQL's parallel workers can read it. The read transaction creates it, so a failed read
leaves nothing; the pipeline drops it when the run ends, whatever the outcome, and the next run
drops the leftovers of a process that died in between (`drop_leftovers`, under the run lock).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus
from segmentation.dataset import Dataset

#: customers validated and written per chunk: the most a `source` read holds in memory at once
FRAME_CHUNK_ROWS = 100_000
#: COPY's text format: a backslash, tab, newline or carriage return in a value is escaped
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def table_name(run_id: int) -> str:
    return f"run_customers_r{int(run_id)}"


def relation(run_id: int) -> sql.Composed:
    """The run's staging table, qualified: a relation of (customer_id, attributes) for
    `features.read_sample` and `assignment.assign`."""
    return sql.SQL("segmentation_internal.{}").format(sql.Identifier(table_name(run_id)))


def create(connection: Connection, run_id: int) -> sql.Composed:
    """Create the run's empty staging table (in the caller's transaction); returns its relation."""
    table = relation(run_id)
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            sql.SQL('create unlogged table {} (customer_id text collate "C", attributes text[])').format(table)
        )
    citus.distribute_like(connection, table)
    return table


def write_frames(connection: Connection, table: sql.Composable, frames: Iterable[pd.DataFrame], dataset: Dataset) -> int:
    """Copy customer frames (customer_id and each declared column as text, None where unknown)
    into `table`, one COPY for all of them; returns the rows written.

    `frames` may be a generator: each frame is encoded and sent before the next is asked for,
    so only one is held at a time.
    """
    written = 0
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(sql.SQL("copy {} (customer_id, attributes) from stdin").format(table)) as copy:
            for frame in frames:
                columns = [copy_text(frame["customer_id"]), copy_text(array_literals(frame[list(dataset.names)]))]
                if len(frame):
                    copy.write(("\n".join(map("\t".join, zip(*columns))) + "\n").encode())
                written += len(frame)
    return written


def first_repeated(connection: Connection, table: sql.Composable) -> tuple[str, int] | None:
    """The lowest customer id that `table` holds more than once and how often, or None."""
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select customer_id, count(*) from {} group by customer_id having count(*) > 1"
                " order by customer_id limit 1"
            ).format(table)
        )
        row = cursor.fetchone()
    return (row[0], int(row[1])) if row else None


def drop(connection: Connection, run_id: int) -> None:
    """Drop the run's staging table if it exists."""
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(sql.SQL("drop table if exists {}").format(relation(run_id)))


def drop_leftovers(connection: Connection) -> list[str]:
    """Drop every staging table: call it under the run lock, before this run stages its own,
    when any that exists belongs to a run whose process died. Returns the names dropped."""
    names = connection.exec_driver_sql(
        "select relname from pg_class where relnamespace = to_regnamespace('segmentation_internal')"
        " and relkind = 'r' and relname ~ '^run_customers_r[0-9]+$' order by relname"
    ).scalars().all()
    for name in names:
        drop(connection, int(name.removeprefix("run_customers_r")))
    return list(names)


def copy_text(values: pd.Series) -> np.ndarray:
    """Text values escaped for COPY's text format, NULL as \\N."""
    text = values.astype(object)
    joined = "".join(text.dropna())  # one scan of one string: much faster than a regex per value
    if any(character in joined for character in _COPY_ESCAPES):
        text = text.str.translate(str.maketrans(_COPY_ESCAPES))
    return text.where(text.notna(), "\\N").to_numpy()


def array_literals(values: pd.DataFrame) -> pd.Series:
    """Each row's values as PostgreSQL text-array input ("{"Female","19","a \\"b\\"",NULL}"):
    every known value quoted, with its backslashes and double quotes escaped; None or NaN as NULL.
    Built a column at a time (numpy adds object arrays element by element in C)."""
    literal = np.full(len(values), "{", dtype=object)
    for position, name in enumerate(values.columns):
        column = values[name]
        known = column.notna().to_numpy()
        text = column.where(known, "").to_numpy(dtype=object)
        if pd.api.types.infer_dtype(text, skipna=False) not in ("string", "empty"):
            text = np.array([str(value) for value in text], dtype=object)
        joined = "".join(text)  # one scan of one string: much faster than a test per value
        if "\\" in joined or '"' in joined:
            text = np.array([value.replace("\\", "\\\\").replace('"', '\\"') for value in text], dtype=object)
        quoted = np.where(known, '"' + text + '"', "NULL")
        literal = literal + ("," if position else "") + quoted
    return pd.Series(literal + "}", index=values.index, dtype=object)
