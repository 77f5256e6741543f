"""Run bookkeeping and the versioned publish of a run's results.

Every function takes a connection and never commits: the pipeline decides what is one
transaction. `publish_results` writes all of a run's rows and flips it to `published`, so
inside the pipeline's single transaction the views switch from the previous run to this one
atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation.dataset import MALL, Dataset
from segmentation.errors import RunLockLost
from segmentation.publish import views

log = logging.getLogger(__name__)


PRUNE_LOCK_TIMEOUT = "2s"


def link_batch(connection: Connection, run_id: int, batch_id: int) -> None:
    connection.execute(
        sa.text("update segmentation_internal.runs set batch_id = :batch_id where run_id = :run_id"),
        {"run_id": run_id, "batch_id": batch_id},
    )


def start_run(
    connection: Connection, settings_json: dict, batch_id: int | None, dataset: Dataset = MALL, source: str | None = None
) -> int:
    """Insert a `running` run row (with its declaration and features) and return its run_id."""
    return connection.execute(
        sa.text(
            """
            insert into segmentation_internal.runs (batch_id, features, scaling, random_state, n_init, settings,
                                           hostname, pid, dataset, dataset_fingerprint, source_name)
            values (:batch_id, :features, :scaling, :random_state, :n_init, cast(:settings as jsonb),
                    :hostname, :pid, cast(:dataset as jsonb), :fingerprint, :source)
            returning run_id
            """
        ),
        {
            "dataset": json.dumps(dataset.describe()),
            "fingerprint": dataset.fingerprint(),
            "source": source,
            "batch_id": batch_id,
            "features": settings_json["features"],
            "scaling": settings_json["scaling"],
            "random_state": settings_json["random_state"],
            "n_init": settings_json["n_init"],
            "settings": json.dumps(settings_json, default=str),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        },
    ).scalar_one()


def end_run(connection: Connection, run_id: int, status: str, error: str | None) -> None:
    """Record a run that did not publish (failed, held or cancelled) with its reason."""
    connection.execute(
        sa.text(
            "update segmentation_internal.runs set status = :status, error = :error, finished_at = clock_timestamp()"
            " where run_id = :run_id and status = 'running'"
        ),
        {"run_id": run_id, "status": status, "error": error},
    )


@dataclasses.dataclass
class PreviousRun:
    """The latest published run fitted on the same features: what a new run is compared with."""

    run_id: int
    centroids: dict[int, dict[str, float]]
    names: dict[int, str]
    sizes: dict[int, int]


def previous_run(connection: Connection, features: list[str], fingerprint: str) -> tuple[PreviousRun | None, int]:
    """The latest published run on the same features and declaration (or None), and the next never-used segment id.

    Segment ids carry over only between such runs; another declaration or other features
    start from fresh ids.
    """
    next_free = connection.execute(
        sa.text("select coalesce(max(segment_id), 0) + 1 from segmentation_internal.segment_profiles")
    ).scalar_one()
    latest = connection.execute(
        sa.text(
            "select run_id from segmentation_internal.runs where status = 'published' and features = :features"
            " and coalesce(dataset_fingerprint, :mall) = :fingerprint"
            " order by published_at desc, run_id desc limit 1"
        ),
        {"features": features, "fingerprint": fingerprint, "mall": MALL.fingerprint()},
    ).scalar()
    if latest is None:
        return None, next_free
    rows = connection.execute(
        sa.text(
            "select segment_id, segment_name, customer_count, centroid from segmentation_internal.segment_profiles"
            " where run_id = :run_id"
        ),
        {"run_id": latest},
    ).all()
    return (
        PreviousRun(
            run_id=latest,
            centroids={row.segment_id: dict(row.centroid) for row in rows},
            names={row.segment_id: row.segment_name for row in rows},
            sizes={row.segment_id: row.customer_count for row in rows},
        ),
        next_free,
    )


PROFILE_COLUMNS = [
    "segment_id", "segment_name", "customer_count", "customer_share", "recommendation",
    "distinguishing_features", "centroid_shift", "previous_customer_count",
]
FEATURE_COLUMNS = [
    "segment_id", "position", "feature", "category", "label", "unit", "is_clustering_feature", "mean", "median",
    "index_value", "z_score", "level",
]
EVALUATION_COLUMNS = [
    "k", "inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "gap", "gap_sd", "stability_ari",
    "is_elbow", "gap_choice", "votes", "is_chosen", "smallest_segment_share",
]


def store_results(
    connection: Connection,
    run_id: int,
    *,
    status: str,
    run_fields: dict,
    evaluations: pd.DataFrame,
    profiles: pd.DataFrame,
    feature_rows: pd.DataFrame,
    n_customers: int,
    dataset: Dataset = MALL,
) -> None:
    """Write a run's k_evaluations and segment_profiles, attach its customer_segments
    partition (written by `assignment.assign`) and set its status.

    `status` is `published` (the views switch to this run when the caller commits) or `held`
    (kept for inspection, never shown by the views). `run_fields` fills the runs row: k,
    k_selection, rationale, silhouette, n_imputed, size_psi, max_centroid_shift, n_outliers,
    error. `n_customers`: the rows written to the partition.
    """
    chosen = evaluations.assign(run_id=run_id, is_chosen=evaluations["k"] == run_fields["k"])
    connection.execute(
        sa.text(
            f"insert into segmentation_internal.k_evaluations (run_id, {', '.join(EVALUATION_COLUMNS)})"
            f" values (:run_id, {', '.join(':' + column for column in EVALUATION_COLUMNS)})"
        ),
        _records(chosen[["run_id", *EVALUATION_COLUMNS]]),
    )
    profile_rows = _records(profiles[PROFILE_COLUMNS])
    for row, centroid in zip(profile_rows, profiles["centroid"]):
        row["run_id"] = run_id
        row["centroid"] = json.dumps(centroid)
    connection.execute(
        sa.text(
            f"""
            insert into segmentation_internal.segment_profiles (run_id, {", ".join(PROFILE_COLUMNS)}, centroid)
            values (:run_id, {", ".join(":" + column for column in PROFILE_COLUMNS)}, cast(:centroid as jsonb))
            """
        ),
        profile_rows,
    )
    if not feature_rows.empty:
        connection.execute(
            sa.text(
                f"insert into segmentation_internal.segment_features (run_id, {', '.join(FEATURE_COLUMNS)})"
                f" values (:run_id, {', '.join(':' + column for column in FEATURE_COLUMNS)})"
            ),
            [{**row, "run_id": run_id} for row in _records(feature_rows[FEATURE_COLUMNS])],
        )
    _attach_partition(connection, run_id)
    if status == "published":
        recreated = views.ensure_views(connection, dataset)
        if recreated:
            log.info("run %d: views %s follow the new declaration", run_id, ", ".join(recreated))
    published = "clock_timestamp()" if status == "published" else "null"
    updated = connection.execute(
        sa.text(
            f"""
            update segmentation_internal.runs set
                status = :status, k = :k, k_selection = :k_selection, rationale = :rationale,
                silhouette = :silhouette, n_customers = :n_customers, n_imputed = cast(:n_imputed as jsonb),
                size_psi = :size_psi, max_centroid_shift = :max_centroid_shift, n_outliers = :n_outliers,
                error = :error, reject_share = :reject_share, finished_at = clock_timestamp(),
                published_at = {published}
            where run_id = :run_id and status = 'running'
            """
        ),
        {
            "run_id": run_id,
            "status": status,
            "n_customers": n_customers,
            **{**run_fields, "n_imputed": json.dumps(run_fields["n_imputed"])},
        },
    ).rowcount
    if updated != 1:  # marked abandoned by a run that took the lock after this one lost it
        raise RunLockLost(f"run {run_id} is no longer running (marked abandoned by a later run); nothing was published")


def record_report(connection: Connection, run_id: int, path: str) -> None:
    connection.execute(
        sa.text("update segmentation_internal.runs set report_path = :path where run_id = :run_id"),
        {"run_id": run_id, "path": path},
    )


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, NaN as None (for bound parameters)."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    records = cleaned.to_dict("records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, np.generic):
                record[key] = value.item()
    return records


def partition_name(run_id: int) -> str:
    return f"customer_segments_r{int(run_id)}"


def _attach_partition(connection: Connection, run_id: int) -> None:
    """Index the run's table and attach it as its partition of `customer_segments`.

    Attaching takes only a SHARE UPDATE EXCLUSIVE lock on `customer_segments`, so dashboards
    reading the views are never blocked.
    """
    table = f"segmentation_internal.{partition_name(run_id)}"
    connection.exec_driver_sql(f"alter table {table} add primary key (run_id, customer_id)")
    connection.exec_driver_sql(
        f"alter table segmentation_internal.customer_segments attach partition {table} for values in ({int(run_id)})"
    )


def prune_customer_rows(connection: Connection, keep_runs: int) -> list[int]:
    """Drop the per-customer partitions of all but the newest `keep_runs` runs that have one.

    The two latest published runs are always kept. Waits at most PRUNE_LOCK_TIMEOUT for the
    brief exclusive lock a partition drop needs. Returns the run ids pruned.
    """
    connection.exec_driver_sql(f"set local lock_timeout = '{PRUNE_LOCK_TIMEOUT}'")
    rows = connection.execute(
        sa.text(
            """
            with partitions as (
                select cast(substring(child.relname from 'customer_segments_r([0-9]+)$') as bigint) as run_id
                from pg_inherits
                join pg_class as child on child.oid = pg_inherits.inhrelid
                join pg_class as parent on parent.oid = pg_inherits.inhparent
                join pg_namespace on pg_namespace.oid = parent.relnamespace
                where pg_namespace.nspname = 'segmentation_internal' and parent.relname = 'customer_segments'
            ),
            protected as (
                select run_id from segmentation_internal.runs where status = 'published'
                order by published_at desc, run_id desc limit 2
            )
            select ranked.run_id
            from (select run_id, row_number() over (order by run_id desc) as recency from partitions) as ranked
            where ranked.recency > :keep
            and ranked.run_id not in (select run_id from protected)
            order by ranked.run_id
            """
        ),
        {"keep": keep_runs},
    ).scalars().all()
    for run_id in rows:
        connection.exec_driver_sql(f"drop table segmentation_internal.{partition_name(run_id)}")
    return list(rows)


def recent_runs(connection: Connection, limit: int = 20) -> list[sa.Row]:
    """The newest `limit` rows of `run_history`."""
    return connection.execute(
        sa.text(
            "select history.run_id, history.status, history.started_at, history.finished_at, history.published_at,"
            " history.k, history.silhouette, history.n_customers, history.error, runs.features,"
            " runs.dataset_fingerprint, runs.source_name"
            " from segmentation.run_history as history join segmentation_internal.runs as runs using (run_id)"
            " order by history.run_id desc limit :limit"
        ),
        {"limit": limit},
    ).all()
