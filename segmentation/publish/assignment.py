"""Every customer's segment and the segments' statistics, computed by PostgreSQL (set-based).

The fit sees a sample (`fitting`); assigning every customer is then one statement that the
server runs over all of them with parallel workers, nothing per customer in Python:

- the fitted encoder becomes SQL expressions over a customer's `attributes` (text, in
  declaration order): imputation, `log` as ln(1 + max(x, 0)), scaling, category indicators
  centred and weighted; every constant is the float64 Python fitted, spelled exactly;
- `create table ... as select` (CTAS can run parallel, `insert ... select` cannot in
  PostgreSQL 15) writes the assigned customers: every one into a new generation of
  `current_segments` when the model was fitted afresh (`write_generation`), or only the
  customers that changed into the run's changes table when it was kept (`write_changes`):
  the nearest centroid's segment id, its distance, the second-nearest's id and the margin, the
  outlier flag, the attributes as they are, beside the customer's previous row. It runs inside
  the publish transaction, so the views switch only at commit;
- one `group by` over assigned customers gives what `SegmentStatistics` holds: counts, outliers, each
  declared column's known count, mean and variance (one aggregate state, so each value is read
  from the text once) and the first category's counts; the encoded columns' sums and the
  imputed counts follow from those (a second scan counts any further category columns).

Distances are float64 and summed in numpy's order, so they equal `clustering.assign`'s to the
last bit, except that PostgreSQL's ln(1 + x) may differ from numpy's log1p(x) in the last
bit for `log` columns. Equally near centroids: the lowest K-Means label wins, for the
nearest and the second (as in `clustering.assign`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus
from segmentation.dataset import Dataset
from segmentation.features import (
    MISSING_CATEGORY,
    Encoder,
    indicator_divisor,
    scaler_parameters,
)
from segmentation.model.fitting import Fitted
from segmentation.profiling.statistics import SegmentStatistics

#: parallel workers for the assignment and the statistics (the benchmark machine has 2 cores)
PARALLEL_WORKERS = 2
#: numpy sums up to this many terms in 8 interleaved partial sums (pairwise summation's block)
_NUMPY_BLOCK = 128


#: a volatile column keeps a subquery from being merged into the query above it, whose every
#: use of a column would then compute it again. `clock_timestamp()` is volatile and parallel
#: safe, so unlike `offset 0` the whole statement still runs in the parallel workers, and unlike
#: a set-returning `generate_series(1, 1)` (a ProjectSet node, ~0.8 µs a row) it costs next to
#: nothing: the assignment at 10M customers took 23 s instead of 28 s
_ONCE = sql.SQL("clock_timestamp() as once")
#: the same fence where volatile functions are refused (Citus, in a distributed `insert ... select`):
#: a set-returning function also keeps a subquery apart, for ~0.8 µs a row; without any fence
#: the merged expressions made the assignment of 10M customers over ten times slower
_ONCE_CITUS = sql.SQL("generate_series(1, 1) as once")


def _float(value: float) -> sql.Composable:
    """A float64 constant, spelled so that PostgreSQL reads back the very same double."""
    return sql.SQL("cast({} as double precision)").format(sql.Literal(repr(float(value))))


def _attribute(dataset: Dataset, name: str) -> sql.Composable:
    """A declared column's text in a customer's attributes (NULL when missing or empty)."""
    return sql.SQL("nullif(attributes[{}], '')").format(sql.Literal(dataset.names.index(name) + 1))


def number(dataset: Dataset, name: str) -> sql.Composable:
    """A number or whole column as double precision (NULL when unknown)."""
    return sql.SQL("cast({} as double precision)").format(_attribute(dataset, name))


def boolean(dataset: Dataset, name: str) -> sql.Composable:
    """A boolean column as 1.0 / 0.0 (NULL when unknown), as `features.typed_values`."""
    return sql.SQL("(case {} when 'true' then {} when 'false' then {} end)").format(
        _attribute(dataset, name), _float(1.0), _float(0.0)
    )


def category(dataset: Dataset, name: str) -> sql.Composable:
    """A category column's value, MISSING_CATEGORY when unknown."""
    return sql.SQL("coalesce({}, {})").format(_attribute(dataset, name), sql.Literal(MISSING_CATEGORY))


def transformed(dataset: Dataset, name: str, value: sql.Composable) -> sql.Composable:
    """`value` on the scale levels are judged on: ln(1 + max(x, 0)) for `log` columns."""
    if dataset.column(name).transform == "log":
        return sql.SQL("ln({} + greatest({}, {}))").format(_float(1.0), value, _float(0.0))
    return value


def encoded_columns(encoder: Encoder, dataset: Dataset) -> list[tuple[sql.Composable, sql.Composable]]:
    """(unscaled, scaled) SQL expressions over `attributes` for each of `encoder.columns`, in
    that order: what `Encoder.transform` gives as `unscaled` and `matrix`."""
    parameters = scaler_parameters(encoder.scaler)
    by_column = {}
    for name in encoder.features:
        column = dataset.column(name)
        if column.type == "category":
            for encoded in encoder.categories[name]:
                indicator = sql.SQL("(case when {} = {} then {} else {} end)").format(
                    category(dataset, name), sql.Literal(encoded[len(name) + 1 :]), _float(1.0), _float(0.0)
                )
                by_column[encoded] = (indicator, _weighted(indicator, encoder, name, encoded))
            continue
        if column.type == "boolean":
            filled = sql.SQL("coalesce({}, {})").format(boolean(dataset, name), _float(encoder.fills[name]))
            by_column[name] = (filled, _weighted(filled, encoder, name, name))
            continue
        filled = sql.SQL("coalesce({}, {})").format(number(dataset, name), _float(encoder.fills[name]))
        unscaled = transformed(dataset, name, filled)
        scaled = unscaled
        if parameters is not None:
            position = encoder.numeric.index(name)
            scaled = sql.SQL("(({} - {}) / {})").format(
                unscaled, _float(parameters[0][position]), _float(parameters[1][position])
            )
        by_column[name] = (unscaled, scaled)
    return [by_column[name] for name in encoder.columns]


def _weighted(indicator: sql.Composable, encoder: Encoder, name: str, encoded: str) -> sql.Composable:
    if encoder.scaling == "none":
        return indicator
    shares = encoder.shares[name]
    return sql.SQL("(({} - {}) / {})").format(
        indicator, _float(shares[encoded]), _float(indicator_divisor(shares))
    )


def numpy_sum(terms: list[sql.Composable]) -> sql.Composable:
    """The sum of `terms` added in the order numpy's pairwise summation adds a row's values
    (up to 128 terms), so that float64 results agree to the last bit."""
    if len(terms) < 8:
        total = terms[0]
        for term in terms[1:]:
            total = sql.SQL("({} + {})").format(total, term)
        return total
    if len(terms) > _NUMPY_BLOCK:
        raise ValueError(f"{len(terms)} encoded columns: at most {_NUMPY_BLOCK} are supported")
    partial = list(terms[:8])
    whole = len(terms) - len(terms) % 8
    for start in range(8, whole, 8):
        partial = [sql.SQL("({} + {})").format(partial[index], terms[start + index]) for index in range(8)]
    pair = lambda left, right: sql.SQL("({} + {})").format(left, right)  # noqa: E731
    total = pair(
        pair(pair(partial[0], partial[1]), pair(partial[2], partial[3])),
        pair(pair(partial[4], partial[5]), pair(partial[6], partial[7])),
    )
    for term in terms[whole:]:
        total = pair(total, term)
    return total


def _lowest_label_case(k: int, distance, allowed) -> sql.Composable:
    """CASE giving the lowest label i among `allowed(i)` whose distance is <= every later allowed one's.

    Evaluated in order, the first such i is the minimum with the lowest label (an earlier
    label that is not the minimum is beaten by a later one, and so on down to i)."""
    branches = []
    for label in range(k):
        conditions = [allowed(label)] if allowed(label) is not None else []
        for later in range(label + 1, k):
            condition = sql.SQL("{} <= {}").format(distance(label), distance(later))
            excluded = allowed(later)
            conditions.append(condition if excluded is None else sql.SQL("(not {} or {})").format(excluded, condition))
        branches.append(
            sql.SQL("when {} then {}").format(sql.SQL(" and ").join(conditions or [sql.SQL("true")]), sql.Literal(label))
        )
    return sql.SQL("(case {} end)").format(sql.SQL(" ").join(branches))


def assignment_query(fitted: Fitted, dataset: Dataset, customers: sql.Composable, run_id: int,
                     volatile: bool = True) -> sql.Composed:
    """The select of the run's per-customer rows (the columns of `customer_segments`) from
    `customers`, a relation of (customer_id, attributes). Each step is a subquery kept apart
    (see _ONCE), so that a value is computed once, not once per use; without `volatile` (Citus
    refuses a volatile function in a distributed `insert ... select`) by `_ONCE_CITUS`."""
    centroids = fitted.model.cluster_centers_.astype(np.float64)
    k = len(centroids)
    scaled = [expression for _, expression in encoded_columns(fitted.encoder, dataset)]
    feature = [sql.Identifier(f"f{index}") for index in range(len(scaled))]
    distance = [sql.Identifier(f"d{label}") for label in range(k)]
    squares = [
        [sql.SQL("({} - {}) * ({} - {})").format(name, _float(centre[index]), name, _float(centre[index]))
         for index, name in enumerate(feature)]
        for centre in centroids
    ]
    ids = sql.SQL("cast({} as integer[])").format(
        sql.Literal("{" + ",".join(str(int(value)) for value in fitted.ids_by_label) + "}")
    )
    fences = sql.SQL("cast({} as double precision[])").format(
        sql.Literal("{" + ",".join("Infinity" if np.isinf(value) else repr(float(value)) for value in fitted.fences) + "}")
    )
    label = sql.Identifier("label")
    if k > 1:
        second_label = _lowest_label_case(
            k, lambda index: distance[index], lambda index: sql.SQL("{} <> {}").format(label, sql.Literal(index))
        )
        second = sql.SQL("least({})").format(sql.SQL(", ").join(
            sql.SQL("case when {} <> {} then {} end").format(label, sql.Literal(index), distance[index]) for index in range(k)
        ))
        second_id = sql.SQL("({})[{} + 1]").format(ids, second_label)
        margin = sql.SQL("{} - nearest").format(second)
    else:
        second_id = sql.SQL("cast(null as integer)")
        margin = sql.SQL("cast(null as double precision)")
    return sql.SQL(
        """
        select cast({run_id} as bigint) as run_id, customer_id, ({ids})[label + 1] as segment_id,
               nearest as distance_to_centroid, {second_id} as second_segment_id, {margin} as margin_to_second,
               nearest > ({fences})[label + 1] as is_outlier, attributes
        from (
            select customer_id, attributes, {distances}, least({distances}) as nearest, {nearest_label} as label, {once}
            from (
                select customer_id, attributes, {measured}, {once}
                from (select customer_id, attributes, {encoded}, {once} from {customers} as customers) as encoded
            ) as measured
        ) as ranked
        """
    ).format(
        run_id=sql.Literal(int(run_id)),
        ids=ids,
        fences=fences,
        second_id=second_id,
        margin=margin,
        distances=sql.SQL(", ").join(distance),
        nearest_label=_lowest_label_case(k, lambda index: distance[index], lambda index: None),
        measured=sql.SQL(", ").join(
            sql.SQL("sqrt({}) as {}").format(numpy_sum(terms), name) for terms, name in zip(squares, distance)
        ),
        encoded=sql.SQL(", ").join(sql.SQL("{} as {}").format(value, name) for value, name in zip(scaled, feature)),
        customers=customers,
        once=_ONCE if volatile else _ONCE_CITUS,
    )


def _parallel(cursor) -> None:
    """For the rest of the transaction: parallel plans from a few MB on (the statements are
    expression-heavy, so workers pay off on tables the planner would scan alone)."""
    cursor.execute(f"set local max_parallel_workers_per_gather = {PARALLEL_WORKERS}")
    cursor.execute("set local parallel_setup_cost = 100")
    cursor.execute("set local min_parallel_table_scan_size = '1MB'")


def generation_table(run_id: int) -> sql.Composed:
    """The table of a generation of `current_segments` (every customer, written by run `run_id`)."""
    return sql.SQL("segmentation_internal.{}").format(sql.Identifier(f"current_segments_g{int(run_id)}"))


def changes_table(run_id: int) -> sql.Composed:
    """The run's table of the customers it reassigned when it kept the model (see `write_changes`)."""
    return sql.SQL("segmentation_internal.{}").format(sql.Identifier(f"run_changes_r{int(run_id)}"))


def _previous(generation: int | None) -> tuple[sql.Composable, sql.Composable]:
    """The join to the previous generation's row of each customer and the columns it gives."""
    if generation is None:
        columns = sql.SQL(
            "cast(null as integer) as previous_segment_id, cast(null as bigint) as previous_since_run_id,"
            " cast(null as boolean) as previous_is_outlier, cast(null as text[]) as previous_attributes"
        )
        return sql.SQL(""), columns
    join = sql.SQL(
        " left join segmentation_internal.current_segments as old"
        " on old.generation_id = {} and old.customer_id = new.customer_id"
    ).format(sql.Literal(int(generation)))
    columns = sql.SQL(
        "old.segment_id as previous_segment_id, old.since_run_id as previous_since_run_id,"
        " old.is_outlier as previous_is_outlier, old.attributes as previous_attributes"
    )
    return join, columns


def write_generation(
    connection: Connection, fitted: Fitted, dataset: Dataset, customers: sql.Composable, run_id: int,
    segmentation_id: int, previous_generation: int | None,
) -> int:
    """Assign every customer of `customers` into a new generation table of `current_segments`
    (not attached yet: `history.publish_generation` does), with each customer's previous segment
    and stretch start from `previous_generation`; returns the rows written.

    `create table ... as select` runs in parallel workers (`insert ... select` cannot in
    PostgreSQL 15); a customer keeps its stretch start when it stays in its segment.
    """
    join, previous = _previous(previous_generation)
    statement = sql.SQL(
        "select cast({run} as bigint) as generation_id,"
        " cast({segmentation} as integer) as segmentation_id, new.customer_id, new.segment_id,"
        " {since} as since_run_id,"
        " new.run_id, new.distance_to_centroid, new.second_segment_id, new.margin_to_second, new.is_outlier,"
        " new.attributes, {previous} from ({query}) as new{join}"
    ).format(
        table=generation_table(run_id), run=sql.Literal(int(run_id)), segmentation=sql.Literal(int(segmentation_id)),
        since=sql.SQL(
            "case when old.segment_id = new.segment_id then old.since_run_id else cast({} as bigint) end"
            if previous_generation is not None else "cast({} as bigint)"
        ).format(sql.Literal(int(run_id))),
        previous=previous, join=join,
        query=assignment_query(fitted, dataset, customers, run_id, citus.volatile_allowed(connection)),
    )
    return citus.create_table_as(connection, generation_table(run_id), statement, unlogged=False, prepare=_parallel)


def write_changes(
    connection: Connection, fitted: Fitted, dataset: Dataset, changed: sql.Composable, gone: sql.Composable,
    run_id: int, generation: int,
) -> int:
    """Assign the customers of `changed` (customer_id, attributes: new, or whose values changed)
    with the kept model into the run's changes table, beside their row of `generation` (if any),
    and add the customers of `gone` (customer_id: no longer segmented) with a null segment.
    A customer whose values equal its published row's is left out (the kept model would give it
    the very same row). Returns the rows written: what the publish then writes into `generation`.
    """
    join, previous = _previous(generation)
    statement = sql.SQL(
        "select new.customer_id, new.segment_id, new.distance_to_centroid, new.second_segment_id,"
        " new.margin_to_second, new.is_outlier, new.attributes, {previous}"
        " from ({query}) as new{join}"
        " where old.customer_id is null or old.attributes is distinct from new.attributes"
        " union all"
        " select old.customer_id, null, null, null, null, null, null, {previous}"
        " from segmentation_internal.current_segments as old"
        " where old.generation_id = {generation} and old.customer_id in (select gone.customer_id from {gone} as gone)"
    ).format(
        previous=previous, query=assignment_query(fitted, dataset, changed, run_id, citus.volatile_allowed(connection)),
        join=join, generation=sql.Literal(int(generation)), gone=gone,
    )
    written = citus.create_table_as(connection, changes_table(run_id), statement, unlogged=True)
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(sql.SQL("alter table {} add primary key (customer_id)").format(changes_table(run_id)))
        cursor.execute(sql.SQL("analyze {}").format(changes_table(run_id)))
    return written


def statistics(connection: Connection, assigned: sql.Composable, encoder: Encoder, dataset: Dataset) -> SegmentStatistics:
    """`SegmentStatistics` of the customers `assigned` selects (segment_id, is_outlier, attributes),
    summed by PostgreSQL.

    One parallel scan groups by segment and the first category column. Per numeric column it
    reads the known values' count and, for the values and (for a `log` column) their transforms,
    `avg` and `var_pop`: both aggregates keep the same state (count, sum, squared deviations),
    which PostgreSQL computes once, so each value is read from the text once. Sums and sums of
    squares follow from them; so do the encoded columns' sums (`_derive_encoded`). A boolean
    gives its true and known counts. Further category columns are counted by a second scan.
    """
    table = sql.SQL("({}) as assigned").format(assigned)
    aggregates = [sql.SQL("count(*)"), sql.SQL("count(*) filter (where is_outlier)")]
    numeric = [column.name for column in dataset.columns if column.is_numeric]
    for name in numeric:
        value = number(dataset, name)
        aggregates += [sql.SQL("count({})").format(_attribute(dataset, name)),
                       sql.SQL("avg({})").format(value), sql.SQL("var_pop({})").format(value)]
        if dataset.column(name).transform == "log":
            scale = transformed(dataset, name, value)
            aggregates += [sql.SQL("avg({})").format(scale), sql.SQL("var_pop({})").format(scale)]
    booleans = [column.name for column in dataset.columns if column.type == "boolean"]
    for name in booleans:
        value = _attribute(dataset, name)
        aggregates += [sql.SQL("count(*) filter (where {} = 'true')").format(value),
                       sql.SQL("count(*) filter (where {} in ('true', 'false'))").format(value)]
    categories = [column.name for column in dataset.columns if column.type == "category"]
    first = category(dataset, categories[0]) if categories else sql.SQL("cast(null as text)")
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        _parallel(cursor)
        cursor.execute(
            sql.SQL("select segment_id, {}, {} from {} group by 1, 2").format(
                first, sql.SQL(", ").join(aggregates), table
            )
        )
        rows = cursor.fetchall()
        counted = [(segment_id, 0, value, count) for segment_id, value, count, *_ in rows] if categories else []
        if len(categories) > 1:
            cursor.execute(
                sql.SQL(
                    "select segment_id, value.position, value.category, count(*) from {},"
                    " lateral (values {}) as value (position, category) group by 1, 2, 3"
                ).format(table, sql.SQL(", ").join(
                    sql.SQL("({}, {})").format(sql.Literal(position), category(dataset, name))
                    for position, name in enumerate(categories) if position > 0
                ))
            )
            counted += cursor.fetchall()
    if not rows:  # no customer (a run that kept the model and found no change)
        empty = SegmentStatistics(dataset)
        empty.n_imputed = {name: 0 for name in encoder.features}
        return empty
    return _statistics_from_rows(rows, counted, encoder, dataset, numeric, booleans, categories)


def _sums(known: pd.Series, mean: pd.Series, variance: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per group, the sum and the sum of squares of the values whose count, mean and population
    variance are given (0 where no value is known)."""
    total = (mean * known).fillna(0.0)
    return total, (variance * known + mean * total).fillna(0.0)


def _statistics_from_rows(rows, counted, encoder, dataset, numeric, booleans, categories) -> SegmentStatistics:
    frame = pd.DataFrame([[float(value) if value is not None else np.nan for value in row[2:]] for row in rows])
    keys = pd.Index([int(row[0]) for row in rows], name="segment_id")
    frame.index = keys
    totals = lambda block: block.groupby(level=0).sum()  # over the first category's values  # noqa: E731
    result = SegmentStatistics(dataset)
    result.counts = totals(frame[0]).astype(np.int64).rename(None)
    result.outliers = totals(frame[1]).astype(np.int64).rename(None)
    segment_ids = result.counts.index
    at = 2
    for name in numeric:
        known = frame[at].fillna(0.0)
        total, squares = _sums(known, frame[at + 1], frame[at + 2])
        result.raw_squares[name] = float(squares.sum())
        at += 3
        if dataset.column(name).transform == "log":  # ln(1 + greatest(NULL, 0)) is 0: every row counts
            total_transformed, squares = _sums(frame[0], frame[at], frame[at + 1])
            at += 2
        else:
            total_transformed = total
        result.numeric[name] = pd.DataFrame(
            {"known": totals(known).astype(np.int64), "total": totals(total), "total_transformed": totals(total_transformed)}
        )
        result.squares[name] = float(squares.sum())
    for name in booleans:
        result.category_counts[name] = pd.DataFrame(
            {"true": totals(frame[at]).astype(np.int64), "known": totals(frame[at + 1]).astype(np.int64)}
        )
        at += 2
    for position, name in enumerate(categories):
        mine = [(int(segment_id), value, int(count)) for segment_id, where, value, count in counted if where == position]
        result.category_counts[name] = (
            pd.DataFrame(mine, columns=["segment_id", "value", "count"])
            .groupby(["segment_id", "value"])["count"].sum().unstack("value")
            .reindex(segment_ids).fillna(0).astype(np.int64)
        )
        result.category_counts[name].columns.name = None
    _derive_encoded(result, encoder, dataset)
    return result


def _derive_encoded(result: SegmentStatistics, encoder: Encoder, dataset: Dataset) -> None:
    """The encoded columns' sums per segment and sums of squares, and the imputed counts, from
    the declared columns' sums: a number is its transformed known values plus the missing ones
    filled (T(fill) each), a boolean its true count plus the missing ones filled, a category
    indicator the count of its value."""
    sums, squares = {}, {}
    result.n_imputed = {name: 0 for name in encoder.features}  # a missing category is a category of its own
    for name in encoder.features:
        column = dataset.column(name)
        if column.type == "category":
            counts = result.category_counts[name]
            for encoded in encoder.categories[name]:
                value = encoded[len(name) + 1 :]
                present = counts[value] if value in counts.columns else pd.Series(0, index=result.counts.index)
                sums[encoded] = present.astype(float)
                squares[encoded] = float(present.sum())
            continue
        fill = float(encoder.fills[name])
        if column.type == "boolean":
            known, true = result.category_counts[name]["known"], result.category_counts[name]["true"]
            missing = result.counts - known
            sums[name] = true + missing * fill
            squares[name] = float(true.sum() + missing.sum() * fill * fill)
        else:
            known = result.numeric[name]["known"]
            missing = result.counts - known
            filled = float(np.log1p(max(fill, 0.0))) if column.transform == "log" else fill
            sums[name] = result.numeric[name]["total_transformed"] + missing * filled
            squares[name] = result.squares[name] + float(missing.sum()) * filled * filled
        result.n_imputed[name] = int(missing.sum())
    result.centroid_sums = pd.DataFrame({name: sums[name].astype(float) for name in encoder.columns}, index=result.counts.index)
    result.encoded_squares = pd.Series({name: squares[name] for name in encoder.columns}, dtype=float)
