"""Run bookkeeping and the versioned publish of a run's results.

Every function takes a connection and never commits: the pipeline decides what is one
transaction. `publish_results` writes all of a run's rows and flips it to `published`, so
inside the pipeline's single transaction the views switch from the previous run to this one
atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
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

log = logging.getLogger(__name__)



def link_batch(connection: Connection, run_id: int, batch_id: int) -> None:
    connection.execute(
        sa.text("update segmentation_internal.runs set batch_id = :batch_id where run_id = :run_id"),
        {"run_id": run_id, "batch_id": batch_id},
    )


def start_run(
    connection: Connection, settings_json: dict, batch_id: int | None, dataset: Dataset = MALL, source: str | None = None,
    segmentation_id: int = 1,
) -> int:
    """Insert a `running` run row of the segmentation (with its declaration and features) and return its run_id."""
    return connection.execute(
        sa.text(
            """
            insert into segmentation_internal.runs (batch_id, features, scaling, random_state, n_init, settings,
                                           hostname, pid, dataset, dataset_fingerprint, source_name, segmentation_id)
            values (:batch_id, :features, :scaling, :random_state, :n_init, cast(:settings as jsonb),
                    :hostname, :pid, cast(:dataset as jsonb), :fingerprint, :source, :segmentation_id)
            returning run_id
            """
        ),
        {
            "segmentation_id": segmentation_id,
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
            "update segmentation_internal.runs set status = :status, error = :error, finished_at = statement_timestamp()"
            " where run_id = :run_id and status = 'running'"
        ),
        {"run_id": run_id, "status": status, "error": error},
    )


@dataclasses.dataclass
class PreviousRun:
    """The segmentation's latest published run on the same features and declaration: what a new
    run is compared with, keeps the ids of, and (when its model still fits) builds on."""

    run_id: int
    centroids: dict[int, dict[str, float]]
    names: dict[int, str]
    sizes: dict[int, int]
    generation_id: int | None = None
    model: dict | None = None
    model_fitted_at: datetime.datetime | None = None
    statistics: dict | None = None
    through_batch_id: int | None = None
    foreign_version: int | None = None
    model_rationale: str | None = None  # why the run that fitted the model chose its k
    model_evaluations: pd.DataFrame | None = None  # that run's candidates k


def latest_published(connection: Connection, segmentation_id: int) -> sa.Row | None:
    """The segmentation's latest published run (any declaration): run_id and generation_id."""
    return connection.execute(
        sa.text(
            "select run_id, generation_id from segmentation_internal.runs"
            " where segmentation_id = :id and status = 'published'"
            " order by published_at desc, run_id desc limit 1"
        ),
        {"id": segmentation_id},
    ).one_or_none()


def previous_run(
    connection: Connection, features: list[str], fingerprint: str, segmentation_id: int = 1
) -> tuple[PreviousRun | None, int]:
    """The segmentation's latest published run on the same features and declaration (or None), and
    the segmentation's next never-used segment id.

    Segment ids carry over only between such runs; another declaration or other features start
    from fresh ids.
    """
    next_free = connection.execute(
        sa.text(
            "select coalesce(max(profile.segment_id), 0) + 1 from segmentation_internal.segment_profiles as profile"
            " join segmentation_internal.runs as runs using (run_id) where runs.segmentation_id = :id"
        ),
        {"id": segmentation_id},
    ).scalar_one()
    latest = connection.execute(
        sa.text(
            "select runs.run_id, runs.generation_id, runs.model, runs.statistics, runs.through_batch_id,"
            " runs.foreign_version,"
            " fitted.started_at as model_fitted_at, fitted.rationale as model_rationale, fitted.run_id as fitted_by"
            " from segmentation_internal.runs as runs"
            " left join segmentation_internal.runs as fitted on fitted.run_id = cast(runs.model ->> 'fitted_by' as bigint)"
            " where runs.segmentation_id = :id and runs.status = 'published' and runs.features = :features"
            " and coalesce(runs.dataset_fingerprint, :mall) = :fingerprint"
            " order by runs.published_at desc, runs.run_id desc limit 1"
        ),
        {"features": features, "fingerprint": fingerprint, "mall": MALL.fingerprint(), "id": segmentation_id},
    ).one_or_none()
    if latest is None:
        return None, next_free
    rows = connection.execute(
        sa.text(
            "select segment_id, segment_name, customer_count, centroid from segmentation_internal.segment_profiles"
            " where run_id = :run_id"
        ),
        {"run_id": latest.run_id},
    ).all()
    return (
        PreviousRun(
            run_id=latest.run_id,
            centroids={row.segment_id: dict(row.centroid) for row in rows},
            names={row.segment_id: row.segment_name for row in rows},
            sizes={row.segment_id: row.customer_count for row in rows},
            generation_id=latest.generation_id,
            model=latest.model,
            model_fitted_at=latest.model_fitted_at,
            statistics=latest.statistics,
            through_batch_id=latest.through_batch_id,
            foreign_version=latest.foreign_version,
            model_rationale=latest.model_rationale,
            model_evaluations=None if latest.fitted_by is None else pd.read_sql_query(
                sa.text(f"select {', '.join(EVALUATION_COLUMNS)} from segmentation_internal.k_evaluations"
                        " where run_id = :run_id order by k"),
                connection, params={"run_id": latest.fitted_by},
            ),
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
    "is_elbow", "gap_choice", "votes", "is_chosen", "smallest_segment_share", "reference_silhouette",
    "reference_silhouette_max", "silhouette_gain",
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
) -> None:
    """Write a run's k_evaluations, segment_profiles and segment_features and set its status.

    `status` is `published` (the views switch to this run when the caller commits) or `held`
    (kept for inspection, never shown by the views). `run_fields` fills the runs row: k,
    k_selection, rationale, silhouette, n_imputed, size_psi, max_centroid_shift, n_outliers,
    error, reject_share, forced_reason, and what the run kept of its assignment: generation_id,
    model, statistics, through_batch_id, foreign_version, model_kept, n_reassigned, n_moved.
    `n_customers`: the customers the run's assignment covers.
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
    published = "statement_timestamp()" if status == "published" else "null"
    updated = connection.execute(
        sa.text(
            f"""
            update segmentation_internal.runs set
                status = :status, k = :k, k_selection = :k_selection, rationale = :rationale,
                silhouette = :silhouette, n_customers = :n_customers, n_imputed = cast(:n_imputed as jsonb),
                size_psi = :size_psi, max_centroid_shift = :max_centroid_shift, n_outliers = :n_outliers,
                error = :error, reject_share = :reject_share, forced_reason = :forced_reason,
                finished_at = statement_timestamp(),
                published_at = {published}, generation_id = :generation_id, model = cast(:model as jsonb),
                statistics = cast(:statistics as jsonb), through_batch_id = :through_batch_id,
                foreign_version = :foreign_version, model_kept = :model_kept, n_reassigned = :n_reassigned,
                n_moved = :n_moved
            where run_id = :run_id and status = 'running'
            """
        ),
        {
            "run_id": run_id,
            "status": status,
            "n_customers": n_customers,
            **{
                "forced_reason": None,
                **run_fields,
                **{name: json.dumps(run_fields[name]) if run_fields.get(name) is not None else None
                   for name in ("n_imputed", "model", "statistics")},
            },
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


def recent_runs(connection: Connection, limit: int = 20, segmentation: str | None = None) -> list[sa.Row]:
    """The newest `limit` rows of `run_history` (of every segmentation, or of `segmentation`)."""
    return connection.execute(
        sa.text(
            "select history.run_id, history.status, history.started_at, history.finished_at, history.published_at,"
            " history.k, history.silhouette, history.n_customers, history.error, history.forced_reason, runs.features,"
            " runs.dataset_fingerprint, runs.source_name, history.segmentation, history.model, history.n_reassigned,"
            " history.n_moved"
            " from segmentation.run_history as history join segmentation_internal.runs as runs using (run_id)"
            " where cast(:segmentation as text) is null or history.segmentation = :segmentation"
            " order by history.run_id desc limit :limit"
        ),
        {"limit": limit, "segmentation": segmentation},
    ).all()
