"""Run bookkeeping and the versioned publish of a run's results.

Every function takes a connection and never commits: the pipeline decides what is one
transaction. `publish_results` writes all of a run's rows and flips it to `published`, so
inside the pipeline's single transaction the views switch from the previous run to this one
atomically.
"""

from __future__ import annotations

import io
import json
import os
import socket

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

COPY_BLOCK_ROWS = 200_000


def mark_abandoned(connection: Connection) -> int:
    """Runs still `running` while we hold the run lock died without finishing: mark them."""
    return connection.execute(
        sa.text(
            "update segmentation.runs set status = 'abandoned', finished_at = clock_timestamp(),"
            " error = coalesce(error, 'the process ended before the run finished')"
            " where status = 'running'"
        )
    ).rowcount


def start_run(connection: Connection, settings_json: dict, batch_id: int | None) -> int:
    """Insert a `running` run row and return its run_id."""
    return connection.execute(
        sa.text(
            """
            insert into segmentation.runs (batch_id, features, scaling, random_state, n_init, settings,
                                           hostname, pid)
            values (:batch_id, :features, :scaling, :random_state, :n_init, cast(:settings as jsonb),
                    :hostname, :pid)
            returning run_id
            """
        ),
        {
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
            "update segmentation.runs set status = :status, error = :error, finished_at = clock_timestamp()"
            " where run_id = :run_id and status = 'running'"
        ),
        {"run_id": run_id, "status": status, "error": error},
    )


def previous_centroids(connection: Connection, features: list[str]) -> tuple[dict[int, np.ndarray] | None, int]:
    """Centroids (original units) of the latest published run fitted on the same features.

    Returns (segment id -> centroid, or None when there is no such run; the next id never used).
    """
    next_free = connection.execute(
        sa.text("select coalesce(max(segment_id), 0) + 1 from segmentation.segment_profiles")
    ).scalar_one()
    latest = connection.execute(
        sa.text(
            "select run_id from segmentation.runs where status = 'published' and features = :features"
            " order by published_at desc, run_id desc limit 1"
        ),
        {"features": features},
    ).scalar()
    if latest is None:
        return None, next_free
    rows = connection.execute(
        sa.text("select segment_id, centroid from segmentation.segment_profiles where run_id = :run_id"),
        {"run_id": latest},
    ).all()
    return {row.segment_id: np.array([row.centroid[name] for name in features]) for row in rows}, next_free


def publish_results(
    connection: Connection,
    run_id: int,
    *,
    k: int,
    k_selection: str,
    rationale: str,
    silhouette: float | None,
    n_imputed: dict[str, int],
    evaluations: pd.DataFrame,
    profiles: pd.DataFrame,
    assignments: pd.DataFrame,
) -> None:
    """Write k_evaluations, segment_profiles and customer_segments and mark the run published.

    `assignments` has one row per customer: customer_id, segment_id, distance_to_centroid,
    gender, age, annual_income_k, spending_score.
    """
    evaluation_rows = evaluations.assign(run_id=run_id, is_chosen=evaluations["k"] == k)
    connection.execute(
        sa.text(
            """
            insert into segmentation.k_evaluations
                (run_id, k, inertia, silhouette, davies_bouldin, calinski_harabasz, is_elbow, is_chosen)
            values (:run_id, :k, :inertia, :silhouette, :davies_bouldin, :calinski_harabasz, :is_elbow, :is_chosen)
            """
        ),
        _records(evaluation_rows),
    )
    profile_columns = [
        "segment_id", "segment_name", "customer_count", "customer_share", "avg_age", "avg_annual_income_k",
        "avg_spending_score", "female_share", "median_age", "median_annual_income_k", "median_spending_score",
        "recommendation",
    ]
    profile_rows = _records(profiles[profile_columns])
    for row, centroid in zip(profile_rows, profiles["centroid"]):
        row["run_id"] = run_id
        row["centroid"] = json.dumps(centroid)
    connection.execute(
        sa.text(
            f"""
            insert into segmentation.segment_profiles (run_id, {", ".join(profile_columns)}, centroid)
            values (:run_id, {", ".join(":" + column for column in profile_columns)}, cast(:centroid as jsonb))
            """
        ),
        profile_rows,
    )
    _copy_assignments(connection, run_id, assignments)
    connection.execute(
        sa.text(
            """
            update segmentation.runs set
                status = 'published', k = :k, k_selection = :k_selection, rationale = :rationale,
                silhouette = :silhouette, n_customers = :n_customers, n_imputed = cast(:n_imputed as jsonb),
                finished_at = clock_timestamp(), published_at = clock_timestamp()
            where run_id = :run_id
            """
        ),
        {
            "run_id": run_id,
            "k": k,
            "k_selection": k_selection,
            "rationale": rationale,
            "silhouette": silhouette,
            "n_customers": len(assignments),
            "n_imputed": json.dumps(n_imputed),
        },
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


def _copy_assignments(connection: Connection, run_id: int, assignments: pd.DataFrame) -> None:
    columns = ["customer_id", "segment_id", "distance_to_centroid", "gender", "age", "annual_income_k", "spending_score"]
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        with cursor.copy(
            f"copy segmentation.customer_segments (run_id, {', '.join(columns)}) from stdin with (format csv)"
        ) as copy:
            for start in range(0, len(assignments), COPY_BLOCK_ROWS):
                block = assignments.iloc[start : start + COPY_BLOCK_ROWS][columns].copy()
                block.insert(0, "run_id", run_id)
                for column in ("age", "spending_score"):
                    block[column] = block[column].astype("Int64")
                text = io.StringIO()
                block.to_csv(text, header=False, index=False, float_format="%.10g")
                copy.write(text.getvalue())


def recent_runs(connection: Connection, limit: int = 20) -> list[sa.Row]:
    """The newest `limit` rows of `run_history`."""
    return connection.execute(
        sa.text(
            "select run_id, status, started_at, finished_at, published_at, k, silhouette, n_customers, error"
            " from segmentation.run_history order by run_id desc limit :limit"
        ),
        {"limit": limit},
    ).all()


def current_profiles(connection: Connection) -> list[sa.Row]:
    return connection.execute(
        sa.text("select * from segmentation.current_segment_profiles order by segment_id")
    ).all()
