"""A `source` table or view: every row checked against the declaration and staged for the run.

The declared columns are read by their `from` name, streamed by COPY on a second connection
and written to the run's staging table a chunk at a time (`staging`), so memory does not grow
with the source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.dataset import BOOLEAN_WORDS, Column, Dataset
from segmentation.db import DATABASE_ERRORS
from segmentation.errors import SegmentationError
from segmentation.features import staging
from segmentation.features.customers import _copy_out_chunks, _frame_from_csv


def stage_source(
    connection: Connection, reader: Connection, source: str, dataset: Dataset, table: sql.Composable,
    chunk_rows: int | None = None,
) -> int:
    """Copy every row of the existing table or view `source` (one row per customer) into the
    run's staging table `table` (see `segmentation.features.staging`); returns the customers staged.

    `reader`, a second connection, streams the source by COPY while `connection` (which must
    have created `table`) writes it, `chunk_rows` (default `staging.FRAME_CHUNK_ROWS`) customers
    at a time: each chunk is checked and brought to the stored text form in memory, so memory
    does not grow with the source. The declared columns are read by their `from` name. A missing
    table or column, a NULL or repeated id, or a value that breaks its column's rules is one
    SegmentationError before any fit (the caller rolls back, and the staging table with it).
    """
    relation, table_name = resolve(connection, source)
    present = {
        row[0]
        for row in connection.exec_driver_sql(
            "select attname from pg_attribute where attrelid = %s and attnum > 0 and not attisdropped", (relation,)
        )
    }
    by_lower = {name.lower(): name for name in present}
    wanted = [dataset.id_column, *(column.source for column in dataset.columns)]
    missing = [name for name in wanted if name not in present and name.lower() not in by_lower]
    if missing:
        raise SegmentationError(
            f"source {source}: no column {', '.join(repr(name) for name in missing)};"
            f" it has {', '.join(sorted(present)[:20])}"
        )
    resolved = [name if name in present else by_lower[name.lower()] for name in wanted]
    statement = sql.SQL("copy (select {} from {}) to stdout with (format csv)").format(
        sql.SQL(", ").join(sql.SQL("cast({} as text)").format(sql.Identifier(name)) for name in resolved), table_name
    )
    pieces = _copy_out_chunks(reader, statement, chunk_rows or staging.FRAME_CHUNK_ROWS)
    chunks = (_checked_source_chunk(_frame_from_csv(piece, dataset), source, dataset) for piece in pieces)
    try:
        with connection.begin_nested():  # a failed COPY leaves the transaction usable for the count below
            written = staging.write_frames(connection, table, chunks, dataset)
    except _NullIds:
        pieces.close()  # cancels the source's COPY, if still running
        with connection.connection.driver_connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("select count(*) from {} where {} is null").format(table_name, sql.Identifier(resolved[0]))
            )
            nulls = cursor.fetchone()[0]
        raise SegmentationError(f"source {source}: {nulls} row(s) have a NULL {dataset.id_column}") from None
    finally:
        pieces.close()
    repeated = staging.first_repeated(connection, table)
    if repeated is not None:
        customer_id, times = repeated
        raise SegmentationError(
            f"source {source}: {dataset.id_column} {customer_id!r} appears {times} times; expected one row per customer"
        )
    return written


def resolve(connection: Connection, source: str) -> tuple[int, sql.Identifier]:
    """The relation `source` names, resolved once by PostgreSQL's own rules (`to_regclass`: an
    unquoted part folds to lower case, a double-quoted one is kept, an unqualified name follows
    the search_path): its oid, and its schema and name from pg_class, quoted, so that the
    relation whose columns are checked is the one read. SegmentationError when there is none.
    """
    try:
        with connection.begin_nested():
            found = connection.exec_driver_sql(
                "select relation.oid, namespace.nspname, relation.relname from pg_class as relation"
                " join pg_namespace as namespace on namespace.oid = relation.relnamespace"
                " where relation.oid = to_regclass(%s)", (source,)
            ).one_or_none()
    except DATABASE_ERRORS:  # a name PostgreSQL cannot parse (settings check the syntax first)
        found = None
    if found is None:
        raise SegmentationError(
            f"source {source}: no such table or view (or no permission to see it); a part in mixed case needs"
            " double quotes: crm.\"CustomerFeatures\""
        )
    return int(found[0]), sql.Identifier(found[1], found[2])


class _NullIds(Exception):
    """A chunk of a source has customers without an id."""


def _checked_source_chunk(frame: pd.DataFrame, source: str, dataset: Dataset) -> pd.DataFrame:
    """Some rows of a source as read: ids checked (and whole ids written without leading zeros),
    each declared column in its stored text form; SegmentationError on the first bad value."""
    ids = frame["customer_id"]
    if ids.isna().any():
        raise _NullIds()  # counted over the whole source by `stage_source`
    if dataset.id_type == "whole":
        if not ids.str.fullmatch(r"[0-9]{1,18}").all():
            bad = ids[~ids.str.fullmatch(r"[0-9]{1,18}")].iloc[0]
            raise SegmentationError(f"source {source}: {dataset.id_column} {bad[:40]!r} is not a whole number (id_type = whole)")
        stripped = ids.str.lstrip("0")  # str(int(id)) for 1 to 18 digits
        frame["customer_id"] = stripped.where(stripped != "", "0")
    for column in dataset.columns:
        frame[column.name] = _normalise_source_column(frame[column.name], column, source)
    return frame


def _normalise_source_column(values: pd.Series, column: Column, source: str) -> pd.Series:
    """The stored text form of a source column's values; SegmentationError on the first bad one."""
    where = f"source {source}: column {column.source}"
    if column.type == "boolean":
        stored = {True: "true", False: "false"}
        mapped, bad = _map_distinct(values, lambda value: stored.get(BOOLEAN_WORDS.get(value.strip().lower())))
        if bad.any():
            raise SegmentationError(f"{where}: {values[bad].iloc[0][:40]!r} is not a boolean (type = boolean)")
        return mapped
    if column.type == "category":
        canonical, bad = _map_distinct(
            values, lambda value: column.canonical_value(value.strip()) if value.strip() else None, blank_is_missing=True
        )
        if bad.any():
            raise SegmentationError(
                f"{where}: {values[bad].iloc[0][:40]!r} is not one of {', '.join(column.values or ())}"
            )
        return canonical
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        raise SegmentationError(f"{where}: {values[bad].iloc[0][:40]!r} is not a number (type = {column.type})")
    if column.type == "whole" and not (numbers.dropna() % 1 == 0).all():
        raise SegmentationError(f"{where}: holds fractions; declare it type = \"number\"")
    for limit, test, word in ((column.minimum, numbers < (column.minimum or 0), "below its minimum"),
                              (column.maximum, numbers > (column.maximum or 0), "above its maximum")):
        if limit is not None and test.any():
            raise SegmentationError(f"{where}: {values[test].iloc[0]} is {word} {limit:g}")
    return values


def _map_distinct(values: pd.Series, function, blank_is_missing: bool = False) -> tuple[pd.Series, np.ndarray]:
    """`function` of each known value (text), computed once per distinct value (a boolean or
    category column holds few), None where unknown; and where it gave None for a known value
    (one that is not blank, with `blank_is_missing`): the bad values."""
    codes, distinct = pd.factorize(values)  # unknown values get code -1, the last entry below
    mapped = [function(value) for value in distinct]
    bad = [result is None and not (blank_is_missing and not value.strip()) for value, result in zip(distinct, mapped)]
    return (
        pd.Series(np.array([*mapped, None], dtype=object)[codes], index=values.index, dtype=object),
        np.array([*bad, False], dtype=bool)[codes],
    )


