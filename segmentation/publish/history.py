"""The published assignment and every customer's history, written as changes.

`current_segments` holds one row per customer of each segmentation: its segment, its values as
the publishing run saw them and the run that put it in that segment (`since_run_id`, the start of
its current stretch). `segment_stretches` holds the closed stretches (slowly changing dimension,
as dbt snapshots keep them): a row is written when a customer moves to another segment or
leaves, never for a customer that stays. Each publish also stores how many customers went from
each segment to each (`segment_transitions`), so no view ever compares two full assignments.

A run writes its rows in one of two ways, both inside the publish transaction:

- it fitted a new model (or most customers changed): a new generation table of every customer
  (`assignment.write_generation`), attached as a partition when the run publishes
  (`publish_generation`); the previous generation is dropped after the commit (`prune`);
- it kept the model: only the customers that changed were assigned (`assignment.write_changes`),
  and their rows are updated, inserted or deleted in place (`publish_changes`).

A held or failed run changes none of these tables.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus, db
from segmentation.dataset import Dataset
from segmentation.model.fitting import Fitted
from segmentation.publish.assignment import changes_table, generation_table

log = logging.getLogger(__name__)

#: how long a statement that drops a table waits for dashboards' queries before it is left for the next run
PRUNE_LOCK_TIMEOUT = "2s"


@dataclasses.dataclass
class Written:
    """What a publish wrote: customers moved (closed stretches with a next segment), customers who
    left, and the transitions (from segment, to segment, customers; None for new / left)."""

    moved: int
    left: int
    transitions: pd.DataFrame


def _execute(connection: Connection, statement: sql.Composable) -> int:
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.rowcount


def _rows(connection: Connection, statement: sql.Composable) -> list[tuple]:
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall()


def _close_stretches(connection: Connection, source: sql.Composable, segmentation_id: int, run_id: int) -> tuple[int, int]:
    """Close the stretch of every customer of `source` (customer_id, previous_segment_id,
    previous_since_run_id, segment_id) whose segment changed (segment_id null: it left);
    returns (moved, left)."""
    db.ensure_partition(connection, "segment_stretches", segmentation_id)
    if citus.distributed(connection):  # Citus gathers a modifying CTE's rows on the coordinator: two statements
        return citus.close_stretches(connection, source, segmentation_id, run_id)
    rows = _rows(connection, sql.SQL(
        "with closed as (insert into segmentation_internal.segment_stretches"
        " (segmentation_id, customer_id, segment_id, from_run_id, to_run_id, next_segment_id)"
        " select {segmentation}, customer_id, previous_segment_id, previous_since_run_id, {run}, segment_id"
        " from {source} where previous_segment_id is not null and previous_segment_id is distinct from segment_id"
        " returning next_segment_id)"
        " select count(*) filter (where next_segment_id is not null), count(*) filter (where next_segment_id is null)"
        " from closed"
    ).format(segmentation=sql.Literal(int(segmentation_id)), run=sql.Literal(int(run_id)), source=source))
    return int(rows[0][0]), int(rows[0][1])


def _transitions(connection: Connection, counted: sql.Composable) -> pd.DataFrame:
    rows = _rows(connection, counted)
    return pd.DataFrame(rows, columns=["from_segment_id", "to_segment_id", "customer_count"])


def publish_generation(
    connection: Connection, run_id: int, segmentation_id: int, dataset: Dataset, previous_generation: int | None,
) -> Written:
    """Make the run's generation table (every customer) the segmentation's published assignment:
    key it, close the stretches of customers who moved or left, count the transitions and attach
    it as a partition of `current_segments`."""
    table = generation_table(run_id)
    _key(connection, run_id, dataset)
    moved, _ = _close_stretches(connection, table, segmentation_id, run_id)
    transitions = _transitions(connection, sql.SQL(
        "select previous_segment_id, segment_id, count(*) from {} group by 1, 2"
    ).format(table))
    left = 0
    if previous_generation is None:
        transitions = transitions.iloc[0:0]
    else:
        found = int(transitions.loc[transitions["from_segment_id"].notna(), "customer_count"].sum())
        before = _rows(connection, sql.SQL(
            "select count(*) from segmentation_internal.current_segments where generation_id = {}"
        ).format(sql.Literal(int(previous_generation))))[0][0]
        if found < before:  # some customers of the previous assignment are not in this one: they left
            gone = sql.SQL(
                "(select old.customer_id, old.segment_id as previous_segment_id,"
                " old.since_run_id as previous_since_run_id, cast(null as integer) as segment_id"
                " from segmentation_internal.current_segments as old"
                " where old.generation_id = {previous}"
                " and not exists (select 1 from {table} as new where new.customer_id = old.customer_id)) as gone"
            ).format(previous=sql.Literal(int(previous_generation)), table=table)
            _, left = _close_stretches(connection, gone, segmentation_id, run_id)
            transitions = pd.concat([transitions, _transitions(connection, sql.SQL(
                "select previous_segment_id, segment_id, count(*) from {} group by 1, 2").format(gone))],
                ignore_index=True)
    _execute(connection, sql.SQL(
        "alter table {} drop column previous_segment_id, drop column previous_since_run_id,"
        " drop column previous_is_outlier, drop column previous_attributes"
    ).format(table))
    _execute(connection, sql.SQL(
        "alter table segmentation_internal.current_segments attach partition {} for values in ({})"
    ).format(table, sql.Literal(int(run_id))))
    return Written(moved, left, transitions)


def _key(connection: Connection, generation: int, dataset: Dataset) -> None:
    """The generation's primary key and, for whole ids, the index lookups by id use (the views show
    the id as bigint: `views.customer_key`)."""
    table = generation_table(generation)
    columns = sql.SQL("alter column is_outlier set default false,"
                      " alter column generation_id set not null, alter column segmentation_id set not null,"
                      " alter column customer_id set not null, alter column segment_id set not null,"
                      " alter column since_run_id set not null, alter column run_id set not null,"
                      " alter column distance_to_centroid set not null, alter column is_outlier set not null")
    check = sql.SQL("add check (generation_id = {})").format(sql.Literal(int(generation)))
    for changes in citus.alter_table_steps(connection, [columns, check]):
        _execute(connection, sql.SQL("alter table {} {}").format(table, changes))
    _execute(connection, sql.SQL("alter table {} add primary key (generation_id, customer_id)").format(table))
    if dataset.id_type == "whole":
        _execute(connection, sql.SQL("create index {} on {} ((cast(customer_id as bigint)))").format(
            sql.Identifier(f"current_segments_g{int(generation)}_whole_id"), table))
    # the nights that follow join their few changed customers with this table: without statistics
    # the planner took it for ~50,000 rows and hashed all of it (10M: 24 s instead of 2 s)
    _execute(connection, sql.SQL("analyze {}").format(table))


def ensure_whole_id_index(connection: Connection, segmentation_id: int, dataset: Dataset) -> None:
    """For whole ids, the index on the stretches' ids as the views show them (bigint)."""
    partition = db.ensure_partition(connection, "segment_stretches", segmentation_id)
    if dataset.id_type == "whole":
        name = f"segment_stretches_s{int(segmentation_id)}_whole_id"
        connection.exec_driver_sql(
            f"create index if not exists {name} on {partition} ((cast(customer_id as bigint)), from_run_id)"
        )


def publish_changes(connection: Connection, run_id: int, segmentation_id: int, generation: int,
                    previous_sizes: dict[int, int]) -> Written:
    """Write the run's changed customers (`assignment.write_changes`) into the published
    generation in place: close the stretches of those who moved or left, update the rows of those
    who stayed or moved, insert the new ones, delete those who left. The transitions are the
    changes' counts, and every other customer of a segment stayed in it."""
    changes = changes_table(run_id)
    current = generation_table(generation)
    moved, left = _close_stretches(connection, changes, segmentation_id, run_id)
    values = sql.SQL(
        "segment_id = changed.segment_id, run_id = {run}, distance_to_centroid = changed.distance_to_centroid,"
        " second_segment_id = changed.second_segment_id, margin_to_second = changed.margin_to_second,"
        " is_outlier = changed.is_outlier, attributes = changed.attributes,"
        " since_run_id = case when changed.previous_segment_id = changed.segment_id then current.since_run_id"
        " else {run} end"
    ).format(run=sql.Literal(int(run_id)))
    _execute(connection, sql.SQL(
        "update {current} as current set {values} from {changes} as changed"
        " where changed.segment_id is not null and changed.previous_segment_id is not null"
        " and current.generation_id = {generation} and current.customer_id = changed.customer_id"
    ).format(current=current, values=values, changes=changes, generation=sql.Literal(int(generation))))
    _execute(connection, sql.SQL(
        "insert into {current} (generation_id, segmentation_id, customer_id, segment_id, since_run_id, run_id,"
        " distance_to_centroid, second_segment_id, margin_to_second, is_outlier, attributes)"
        " select {generation}, {segmentation}, customer_id, segment_id, {run}, {run}, distance_to_centroid,"
        " second_segment_id, margin_to_second, is_outlier, attributes from {changes}"
        " where segment_id is not null and previous_segment_id is null"
    ).format(current=current, generation=sql.Literal(int(generation)), segmentation=sql.Literal(int(segmentation_id)),
             run=sql.Literal(int(run_id)), changes=changes))
    _execute(connection, sql.SQL(
        "delete from {current} as current using {changes} as changed"
        " where changed.segment_id is null and current.generation_id = {generation}"
        " and current.customer_id = changed.customer_id"
    ).format(current=current, changes=changes, generation=sql.Literal(int(generation))))
    counted = _transitions(connection, sql.SQL(
        "select previous_segment_id, segment_id, count(*) from {} group by 1, 2").format(changes))
    away = counted.dropna(subset=["from_segment_id"]).groupby("from_segment_id")["customer_count"].sum()
    stays = pd.DataFrame(
        [(segment_id, segment_id, size - int(away.get(segment_id, 0))) for segment_id, size in previous_sizes.items()],
        columns=["from_segment_id", "to_segment_id", "customer_count"],
    )
    transitions = (
        pd.concat([counted, stays], ignore_index=True)
        .groupby(["from_segment_id", "to_segment_id"], dropna=False, as_index=False)["customer_count"].sum()
    )
    return Written(moved, left, transitions[transitions["customer_count"] > 0].reset_index(drop=True))


def store_transitions(connection: Connection, run_id: int, previous_run_id: int, transitions: pd.DataFrame) -> None:
    """Keep the publish's transitions (from the previous published run of the segmentation)."""
    if transitions.empty:
        return
    connection.execute(
        sa.text(
            "insert into segmentation_internal.segment_transitions"
            " (run_id, from_run_id, from_segment_id, to_segment_id, customer_count)"
            " values (:run_id, :from_run_id, :from_segment_id, :to_segment_id, :customer_count)"
        ),
        [
            {"run_id": run_id, "from_run_id": previous_run_id,
             "from_segment_id": None if pd.isna(row.from_segment_id) else int(row.from_segment_id),
             "to_segment_id": None if pd.isna(row.to_segment_id) else int(row.to_segment_id),
             "customer_count": int(row.customer_count)}
            for row in transitions.itertuples()
        ],
    )


def drop_run_tables(connection: Connection, run_id: int) -> None:
    """Drop the run's changes table and its unattached generation table, if any (a held run's)."""
    attached = connection.execute(
        sa.text("select exists (select 1 from pg_inherits where inhrelid = to_regclass(:name))"),
        {"name": f"segmentation_internal.current_segments_g{int(run_id)}"},
    ).scalar_one()
    _execute(connection, sql.SQL("drop table if exists {}").format(changes_table(run_id)))
    if not attached:
        _execute(connection, sql.SQL("drop table if exists {}").format(generation_table(run_id)))


def drop_leftovers(connection: Connection) -> list[str]:
    """Drop the changes tables and unattached generation tables of runs whose process died (call
    it under the run lock, before this run writes its own). Returns the names dropped."""
    names = connection.exec_driver_sql(
        "select relname from pg_class where relnamespace = to_regnamespace('segmentation_internal')"
        " and relkind = 'r' and (relname ~ '^run_changes_r[0-9]+$'"
        " or (relname ~ '^current_segments_g[0-9]+$' and not relispartition)) order by relname"
    ).scalars().all()
    for name in names:
        connection.exec_driver_sql(f"drop table segmentation_internal.{name}")  # names matched above: digits only
    return list(names)


#: customers of a run's sample kept for its report
SAMPLE_ROWS = 20_000


def store_sample(connection: Connection, run_id: int, fitted: Fitted, dataset: Dataset) -> None:
    """Keep a seeded sample of the run's customers (at most SAMPLE_ROWS of the fitting sample) with
    their segment and outlier flag, for the run's report, published or held."""
    from segmentation.features import staging
    from segmentation.model import clustering, selection

    rows = selection.seeded_sample(np.arange(len(fitted.sample)), SAMPLE_ROWS, 42)
    picked = fitted.sample.iloc[rows].reset_index(drop=True)
    if not len(picked):
        return
    encoded = fitted.encoder.transform(picked, dataset)
    assigned = clustering.assign(fitted.model, encoded.matrix, fitted.ids_by_label, fitted.fences)
    columns = [
        np.full(len(picked), str(int(run_id)), dtype=object),
        staging.copy_text(picked["customer_id"].astype(str)),
        assigned.segment_ids.astype(str).astype(object),
        np.where(assigned.is_outlier, "true", "false").astype(object),
        staging.copy_text(staging.array_literals(picked[list(dataset.names)])),
    ]
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(
        "copy segmentation_internal.run_samples (run_id, customer_id, segment_id, is_outlier, attributes) from stdin"
    ) as copy:
        copy.write(("\n".join(map("\t".join, zip(*columns))) + "\n").encode())


def prune(connection: Connection, segmentation_id: int, history_days: int, sample_runs: int) -> tuple[list[int], int]:
    """After a publish: drop the segmentation's generations no published run shows any more (the
    views show the latest's), delete its closed stretches that ended more than `history_days`
    ago and the customer samples of all but its newest `sample_runs` runs. Waits at most PRUNE_LOCK_TIMEOUT for the brief exclusive lock a drop needs.
    Returns (generations dropped, stretches deleted)."""
    connection.exec_driver_sql(f"set local lock_timeout = '{PRUNE_LOCK_TIMEOUT}'")
    stale = connection.execute(
        sa.text(
            """
            select distinct runs.generation_id
            from segmentation_internal.runs as runs
            where runs.segmentation_id = :id and runs.generation_id is not null
            and runs.generation_id <> coalesce((
                select latest.generation_id from segmentation_internal.runs as latest
                where latest.segmentation_id = :id and latest.status = 'published'
                order by latest.published_at desc, latest.run_id desc limit 1
            ), -1)
            and to_regclass('segmentation_internal.current_segments_g' || runs.generation_id) is not null
            order by 1
            """
        ),
        {"id": segmentation_id},
    ).scalars().all()
    for generation in stale:
        _execute(connection, sql.SQL("drop table {}").format(generation_table(int(generation))))
    connection.execute(
        sa.text(
            "delete from segmentation_internal.run_samples where run_id in ("
            " select run_id from segmentation_internal.runs where segmentation_id = :id"
            " order by run_id desc offset :keep)"
        ),
        {"id": segmentation_id, "keep": sample_runs},
    )
    deleted = 0
    if db.partition_exists(connection, "segment_stretches", segmentation_id):
        deleted = connection.execute(
            sa.text(
                f"delete from {db.partition('segment_stretches', segmentation_id)} as stretch"
                " using segmentation_internal.runs as ended"
                " where ended.run_id = stretch.to_run_id"
                " and ended.published_at < statement_timestamp() - make_interval(days => :days)"
            ),
            {"days": history_days},
        ).rowcount
    return [int(generation) for generation in stale], deleted
