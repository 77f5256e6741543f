"""How a run writes its assignment: every customer, or only the customers that changed.

A run that fitted a new model assigns every customer into a new generation of
`current_segments`. A run that kept the published model (`model.keeping`) needs only the
customers whose values changed since that model's last publish, the new ones, and those no
longer segmented (`plan`):

- customers imported from a file carry the import batch that last changed them
  (`customers.last_batch_id`), so the changed ones are those past the batches the last publish
  covered (`runs.through_batch_id`): one scan of the segmentation's customers, no join. This
  holds while nothing but the job's imports wrote `customers` (`table_versions`, segmentation 0);
- a `source` table, RFM from orders, or customers written from outside the job are compared
  with the published rows instead (one join).

When more than REWRITE_SHARE of the customers changed, writing a new generation is cheaper than
changing rows in place, and the run does that with the kept model. Either way the statistics of
the segments follow: summed over the new generation, or the last publish's sums with the changed
customers' old values taken away and their new values added.
"""

from __future__ import annotations

import dataclasses
import logging

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus, db
from segmentation.dataset import Dataset
from segmentation.model.fitting import Fitted
from segmentation.profiling.statistics import SegmentStatistics
from segmentation.publish import PreviousRun, assignment, history

log = logging.getLogger(__name__)

#: above this share of changed customers a run writes a new generation instead of changing rows in place
REWRITE_SHARE = 0.2


@dataclasses.dataclass
class Changes:
    """Where the customers a run reassigns come from: `changed` (customer_id, attributes) and
    `gone` (customer_id), both over the temporary table `run_changed`; how many; how they were found."""

    changed: sql.Composable
    gone: sql.Composable
    n_changed: int
    n_gone: int
    how: str


@dataclasses.dataclass
class Assigned:
    """What a run wrote before publishing: a whole generation or its changes, the generation its
    rows are in once published, the customers it assigned and the segments' statistics."""

    whole: bool
    generation_id: int
    n_assigned: int
    statistics: SegmentStatistics
    why: str


def find_changes(
    connection: Connection, customers: sql.Composable, segmentation_id: int, dataset_id: int | None,
    generation: int, through_batch_id: int | None,
) -> Changes:
    """The customers that changed since the publish of `generation`'s latest run, into the
    temporary table `run_changed` (customer_id, attributes, present): by their import batch
    (`through_batch_id`, when the caller knows it is reliable) or by comparing `customers` with
    the published rows."""
    raw = connection.connection.driver_connection
    if through_batch_id is not None and dataset_id is not None:
        how = f"customers changed by imports after batch {through_batch_id}"
        statement = sql.SQL(
            "select customer_id, attributes, is_active and dataset_id = {dataset} as present"
            " from {customers} where last_batch_id > {through}"
        ).format(dataset=sql.Literal(int(dataset_id)), through=sql.Literal(int(through_batch_id)),
                 customers=sql.SQL(db.partition("customers", segmentation_id)))
    else:
        how = "customers compared with the published rows"
        statement = sql.SQL(
            "select new.customer_id, new.attributes, true as present from {customers} as new"
            " left join segmentation_internal.current_segments as old"
            " on old.generation_id = {generation} and old.customer_id = new.customer_id"
            " where old.customer_id is null or old.attributes is distinct from new.attributes"
            " union all"
            " select old.customer_id, null, false from segmentation_internal.current_segments as old"
            " where old.generation_id = {generation}"
            " and not exists (select 1 from {customers} as new where new.customer_id = old.customer_id)"
        ).format(customers=customers, generation=sql.Literal(int(generation)))
    if not citus.create_stage_as(connection, "run_changed", statement):  # on Citus a temporary table would gather them
        with raw.cursor() as cursor:
            cursor.execute(sql.SQL("create temporary table run_changed on commit drop as {}").format(statement))
    with raw.cursor() as cursor:
        cursor.execute("analyze run_changed")
        cursor.execute("select count(*) filter (where present), count(*) filter (where not present) from run_changed")
        n_changed, n_gone = cursor.fetchone()
    return Changes(
        changed=sql.SQL("(select customer_id, attributes from run_changed where present)"),
        gone=sql.SQL("(select customer_id from run_changed where not present)"),
        n_changed=int(n_changed), n_gone=int(n_gone), how=how,
    )


def _whole_generation(connection, fitted, dataset, customers, run_id, segmentation_id, previous_generation, why):
    written = assignment.write_generation(
        connection, fitted, dataset, customers, run_id, segmentation_id, previous_generation
    )
    if written != fitted.n_customers:  # customers changed under the run lock: never publish half
        raise RuntimeError(f"assigned {written} customers, but {fitted.n_customers} were counted before the fit")
    statistics = assignment.statistics(
        connection, sql.SQL("select segment_id, is_outlier, attributes from {}").format(
            assignment.generation_table(run_id)), fitted.encoder, dataset,
    )
    return Assigned(True, run_id, written, statistics, why)


def assign(
    connection: Connection, fitted: Fitted, kept: bool, dataset: Dataset, customers: sql.Composable, run_id: int,
    segmentation_id: int, dataset_id: int | None, previous: PreviousRun | None, latest_generation: int | None,
    reliable_batches: bool,
) -> Assigned:
    """Write the run's assignment (in the caller's publish transaction): only the changed customers
    when the model was kept and few changed, else every customer into a new generation."""
    if not kept or previous is None or previous.generation_id is None or previous.generation_id != latest_generation:
        return _whole_generation(connection, fitted, dataset, customers, run_id, segmentation_id, latest_generation,
                                 "every customer assigned with a new model")
    if not SegmentStatistics.readable(previous.statistics):
        return _whole_generation(connection, fitted, dataset, customers, run_id, segmentation_id, latest_generation,
                                 "every customer assigned: the segments' sums were stored by an earlier version")
    changes = find_changes(connection, customers, segmentation_id, dataset_id, previous.generation_id,
                           previous.through_batch_id if reliable_batches else None)
    if changes.n_changed + changes.n_gone > REWRITE_SHARE * max(fitted.n_customers, 1):
        return _whole_generation(
            connection, fitted, dataset, customers, run_id, segmentation_id, latest_generation,
            f"{changes.n_changed + changes.n_gone} customers changed ({changes.how}), more than"
            f" {REWRITE_SHARE:.0%}: every customer assigned with the kept model",
        )
    raw = connection.connection.driver_connection
    db.index_lookups(raw)  # at most REWRITE_SHARE of the customers: looked up, not hashed
    written = assignment.write_changes(
        connection, fitted, dataset, changes.changed, changes.gone, run_id, previous.generation_id
    )
    db.planner_defaults(raw)
    table = assignment.changes_table(run_id)
    added = assignment.statistics(connection, sql.SQL(
        "select segment_id, is_outlier, attributes from {} where segment_id is not null").format(table),
        fitted.encoder, dataset)
    removed = assignment.statistics(connection, sql.SQL(
        "select previous_segment_id as segment_id, previous_is_outlier as is_outlier,"
        " previous_attributes as attributes from {} where previous_segment_id is not null").format(table),
        fitted.encoder, dataset)
    statistics = SegmentStatistics.from_json(previous.statistics, dataset).combined(added, removed)
    if statistics.total != fitted.n_customers:  # never publish sums that do not add up to the customers counted
        raise RuntimeError(
            f"the segments' statistics count {statistics.total} customers after the changes, but"
            f" {fitted.n_customers} were counted before the fit"
        )
    return Assigned(False, previous.generation_id, written, statistics,
                    f"{written} customers reassigned ({changes.how}) with the kept model")


def publish(
    connection: Connection, assigned: Assigned, run_id: int, segmentation_id: int, dataset: Dataset,
    latest_generation: int | None, previous_sizes: dict[int, int],
) -> history.Written:
    """Make the run's assignment the published one (stretches, rows, transitions)."""
    history.ensure_whole_id_index(connection, segmentation_id, dataset)
    if assigned.whole:
        return history.publish_generation(connection, run_id, segmentation_id, dataset, latest_generation)
    raw = connection.connection.driver_connection
    db.index_lookups(raw)  # the changed customers' rows are looked up in the generation's key
    written = history.publish_changes(connection, run_id, segmentation_id, assigned.generation_id, previous_sizes)
    db.planner_defaults(raw)
    return written
