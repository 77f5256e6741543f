"""Feature matrices: from the customers (or a `source` table) to the numbers K-Means sees.

Grain: one row per active customer, ordered by customer id (so the row order of an export
never changes the result). Everything follows the declaration (`segmentation.dataset`):

- number / whole: missing values imputed with the median (counted), `log` transform as
  log(1 + x), then the `scaling` setting (standard by default);
- boolean: 0/1, missing values imputed with the most common value (counted), then scaled
  to unit variance like a number;
- category: one indicator column per category, missing values as a category of their own
  ("(missing)"); the indicators are centred and divided by sqrt(sum p(1 - p)), so that one
  categorical feature carries the same total variance (weight) as one numeric feature,
  whatever its number of categories.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import numpy as np
import pandas as pd
from psycopg import sql
from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler
from sqlalchemy.engine import Connection

from segmentation import staging
from segmentation.dataset import BOOLEAN_WORDS, Column, Dataset
from segmentation.errors import SegmentationError

MISSING_CATEGORY = "(missing)"


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


def imported_customers(dataset_id: int) -> sql.Composable:
    """The active customers imported under the declaration `dataset_id`, as (customer_id, attributes)."""
    return sql.SQL(
        "(select customer_id, attributes from segmentation_internal.customers where is_active and dataset_id = {})"
    ).format(sql.Literal(int(dataset_id)))


def _customers_query(dataset: Dataset, customers: sql.Composable, condition: sql.Composable = sql.SQL("true")) -> sql.Composed:
    attributes = [
        sql.SQL("attributes[{}]").format(sql.Literal(position)) for position in range(1, len(dataset.columns) + 1)
    ]
    return sql.SQL(
        "copy (select customer_id, {} from {} as customers where {} order by customer_id) to stdout with (format csv)"
    ).format(sql.SQL(", ").join(attributes), customers, condition)


def read_customers(connection: Connection, dataset: Dataset, customers: sql.Composable) -> pd.DataFrame:
    """Every customer of `customers`, a relation of (customer_id, attributes) such as
    `imported_customers` or a run's staging table (`segmentation.staging`), by COPY, in id order.

    Columns: customer_id (str) and each declared column as validated text (None where
    unknown); `typed_values` turns them into numbers and categories.
    """
    return _frame_from_csv(_copy_out(connection, _customers_query(dataset, customers)), dataset)


def read_active_customers(connection: Connection, dataset: Dataset, dataset_id: int) -> pd.DataFrame:
    """Active customers imported under the declaration `dataset_id` (see `read_customers`)."""
    return read_customers(connection, dataset, imported_customers(dataset_id))


def count_active_customers(connection: Connection, dataset_id: int) -> tuple[int, int]:
    """Active customers imported under the declaration `dataset_id`, and those imported under
    another one (left out of the fit), in one scan."""
    mine, other = connection.exec_driver_sql(
        "select count(*) filter (where dataset_id = %s), count(*) filter (where dataset_id <> %s)"
        " from segmentation_internal.customers where is_active", (dataset_id, dataset_id)
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


def stage_source(
    connection: Connection, reader: Connection, source: str, dataset: Dataset, table: sql.Composable,
    chunk_rows: int | None = None,
) -> int:
    """Copy every row of the existing table or view `source` (one row per customer) into the
    run's staging table `table` (see `segmentation.staging`); returns the customers staged.

    `reader`, a second connection, streams the source by COPY while `connection` (which must
    have created `table`) writes it, `chunk_rows` (default `staging.FRAME_CHUNK_ROWS`) customers
    at a time: each chunk is checked and brought to the stored text form in memory, so memory
    does not grow with the source. The declared columns are read by their `from` name. A missing
    table or column, a NULL or repeated id, or a value that breaks its column's rules is one
    SegmentationError before any fit (the caller rolls back, and the staging table with it).
    """
    schema, _, table_part = source.rpartition(".")
    exists = connection.exec_driver_sql("select to_regclass(%s) is not null", (source,)).scalar()
    if not exists:
        raise SegmentationError(f"source {source}: no such table or view (or no permission to see it)")
    present = {
        row[0]
        for row in connection.exec_driver_sql(
            "select attname from pg_attribute where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped",
            (source,),
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
    table_name = sql.Identifier(*( [schema, table_part] if schema else [table_part]))
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


def typed_values(frame: pd.DataFrame, column: Column) -> pd.Series:
    """A declared column in usable form: floats for numbers, 1.0/0.0 for booleans, text for categories."""
    values = frame[column.name]
    if column.is_numeric:
        if values.dtype.kind == "f":  # read as numbers already
            return values
        return pd.to_numeric(values, errors="coerce").astype(float)
    if column.type == "boolean":
        return values.map({"true": 1.0, "false": 0.0}).astype(float)
    return values


@dataclasses.dataclass
class Encoded:
    """The feature matrix of one run (or of one chunk of its customers).

    `matrix`: rows x encoded columns, scaled (what K-Means sees). `unscaled`: the same
    columns before scaling (after imputation and log), used for centroids and spreads.
    `columns`: encoded column names ("income", "region=West"). `n_imputed`: missing values
    filled per feature.
    """

    matrix: np.ndarray
    unscaled: pd.DataFrame
    columns: list[str]
    n_imputed: dict[str, int]


@dataclasses.dataclass
class Encoder:
    """What `fit_encoder` learnt from some customers, to encode these and any others alike.

    Per feature: the fill value of a number (median) or boolean (most common value), the
    categories seen with their shares; the fitted scaler of the numbers. A category that the
    fitting rows never showed gets no column of its own (all its indicators are 0).
    """

    features: list[str]
    scaling: str
    fills: dict[str, float]
    categories: dict[str, list[str]]
    shares: dict[str, pd.Series]
    numeric: list[str]
    scaler: object | None
    columns: list[str]

    def transform(self, frame: pd.DataFrame, dataset: Dataset) -> Encoded:
        """Encode `frame` (customers as read: ids and declared columns as text) with the fitted parameters."""
        numeric_parts, other_parts, n_imputed = {}, [], {}
        for name in self.features:
            column = dataset.column(name)
            values = typed_values(frame, column)
            if column.type == "category":
                filled = values.fillna(MISSING_CATEGORY)
                n_imputed[name] = 0
                indicators = pd.get_dummies(filled, prefix=name, prefix_sep="=", dtype=float)
                indicators = indicators.reindex(columns=self.categories[name], fill_value=0.0)
                other_parts.append(_weighted(indicators, self.scaling, self.shares[name]))
                continue
            n_imputed[name] = int(values.isna().sum())
            filled = values.fillna(self.fills[name])
            if column.type == "boolean":
                other_parts.append(_weighted(filled.to_frame(name), self.scaling, self.shares[name]))
                continue
            if column.transform == "log":
                filled = np.log1p(filled.clip(lower=0))
            numeric_parts[name] = filled
        pieces = []
        if numeric_parts:
            numeric = pd.DataFrame(numeric_parts, index=frame.index)[self.numeric]
            scaled = self.scaler.transform(numeric.to_numpy()) if len(numeric) else numeric.to_numpy()
            pieces.append((numeric, pd.DataFrame(np.asarray(scaled, dtype=np.float64), index=frame.index, columns=numeric.columns)))
        pieces.extend(other_parts)
        unscaled = pd.concat([piece[0] for piece in pieces], axis=1)[self.columns]
        scaled = pd.concat([piece[1] for piece in pieces], axis=1)[self.columns]
        return Encoded(
            matrix=scaled.to_numpy(dtype=np.float64), unscaled=unscaled, columns=self.columns, n_imputed=n_imputed
        )


def fit_encoder(frame: pd.DataFrame, dataset: Dataset, features: list[str], scaling: str) -> Encoder:
    """Learn the encoding of `features` (declared names) from a customers frame (all or a sample)."""
    fills, categories, shares, numeric_parts = {}, {}, {}, {}
    for name in features:
        column = dataset.column(name)
        values = typed_values(frame, column)
        if column.type == "category":
            indicators = pd.get_dummies(values.fillna(MISSING_CATEGORY), prefix=name, prefix_sep="=", dtype=float)
            categories[name] = sorted(indicators.columns)
            shares[name] = indicators[categories[name]].mean()
            continue
        if column.type == "boolean":
            mode = values.mode()
            fills[name] = float(mode.iloc[0]) if len(mode) else 0.0
            shares[name] = values.fillna(fills[name]).to_frame(name).mean()
            continue
        median = values.median()
        fills[name] = 0.0 if np.isnan(median) else median
        filled = values.fillna(fills[name])
        numeric_parts[name] = np.log1p(filled.clip(lower=0)) if column.transform == "log" else filled
    scaler = make_scaler(scaling).fit(pd.DataFrame(numeric_parts).to_numpy()) if numeric_parts else None
    encoded_names = {name: categories.get(name, [name]) for name in features}
    # keep the order of `features`, each feature's encoded columns together
    columns = [encoded for name in features for encoded in encoded_names[name]]
    return Encoder(
        features=list(features), scaling=scaling, fills=fills, categories=categories, shares=shares,
        numeric=list(numeric_parts), scaler=scaler, columns=columns,
    )


def encode(frame: pd.DataFrame, dataset: Dataset, features: list[str], scaling: str) -> Encoded:
    """Build the feature matrix of `features` (declared names) from a customers frame."""
    return fit_encoder(frame, dataset, features, scaling).transform(frame, dataset)


def _weighted(indicators: pd.DataFrame, scaling: str, shares: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Centre 0/1 columns by their fitted `shares` and divide by sqrt(sum p(1 - p)): the feature's total variance is 1."""
    if scaling == "none":
        return indicators, indicators
    return indicators, (indicators - shares) / indicator_divisor(shares)


def indicator_divisor(shares: pd.Series) -> float:
    """What a 0/1 feature's centred columns are divided by: sqrt(sum p(1 - p)) of its fitted shares (1 if 0)."""
    total_variance = float((shares * (1 - shares)).sum())
    return np.sqrt(total_variance) if total_variance > 0 else 1.0


def scaler_parameters(scaler) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, scale) per numeric column of a fitted `make_scaler` transformer: it computes
    (x - centre) / scale. None for `none` (the identity)."""
    if isinstance(scaler, StandardScaler):
        return scaler.mean_, scaler.scale_
    if isinstance(scaler, RobustScaler):
        return scaler.center_, scaler.scale_
    return None


def make_scaler(method: str):
    """The scikit-learn transformer for the `scaling` setting (standard, robust or none)."""
    if method == "standard":
        return StandardScaler()
    if method == "robust":
        return RobustScaler()
    if method == "none":
        return FunctionTransformer(lambda values: values, inverse_func=lambda values: values)
    raise ValueError(f"unknown scaling {method!r}")
