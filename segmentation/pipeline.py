"""The nightly job as one function, shared by the command line and the scheduler.

Transactions (this module owns them all):
1. the run lock, on its own connection, for the whole run;
2. import: a committed `running` batch row, then one transaction for the file's data;
3. a committed `running` run row;
4. reading customers, then computing with no transaction open;
5. one transaction that writes every result row and marks the run published.
A failure anywhere leaves the previous published run current and records why.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from segmentation import clustering, db, features, ingest, model_selection, profiling, publish
from segmentation.errors import NothingToSegment, SegmentationError
from segmentation.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunOutcome:
    """What `run_once` did: the import (if any), the run id and its published profiles."""

    run_id: int
    k: int
    silhouette: float | None
    n_customers: int
    rationale: str
    profiles: pd.DataFrame
    evaluations: pd.DataFrame
    import_result: ingest.ImportResult | None = None


def import_file(engine: Engine, path: Path, settings: Settings) -> ingest.ImportResult:
    """Import one CSV: all its rows or none, with the batch row recording the outcome."""
    with engine.begin() as connection:
        batch_id = ingest.begin_batch(connection, path.name, settings.export_mode)
    try:
        with engine.begin() as connection:
            result = ingest.load_file(
                connection, path, batch_id, column_map=settings.column_map, export_mode=settings.export_mode
            )
    except BaseException as error:
        message = str(error) if isinstance(error, SegmentationError) else f"{type(error).__name__}: {error}"
        with engine.begin() as connection:
            ingest.fail_batch(connection, batch_id, db.redact(message))
        raise
    log.info("import %s: %s", path, result.summary())
    return result


def segment(customers: pd.DataFrame, settings: Settings, previous: dict[int, np.ndarray] | None, next_free_id: int):
    """Pure middle of the run: choose k, fit, assign, profile. No I/O.

    Returns (k, k_selection, rationale, silhouette, n_imputed, evaluations, profiles, assignments).
    """
    n_rows = len(customers)
    if n_rows < max(settings.k_min, 2) + 1:
        raise NothingToSegment(
            f"only {n_rows} active customers; at least {max(settings.k_min, 2) + 1} are needed to fit segments"
        )
    feature_values, n_imputed = features.feature_frame(customers, settings.features)
    for name, count in n_imputed.items():
        if count:
            log.info("imputed %d missing %s values with the median", count, name)
    scaler = features.make_scaler(settings.scaling)
    scaled = np.asarray(scaler.fit_transform(feature_values.to_numpy()), dtype=np.float64)

    sample = model_selection.seeded_sample(scaled, settings.selection_sample_size, settings.random_state)
    k_max = min(settings.k_max, len(sample) - 1)
    k_values = range(settings.k_min, k_max + 1) if settings.k is None else range(settings.k, settings.k + 1)
    started = time.monotonic()
    evaluations = model_selection.evaluate_candidates(
        sample, k_values, random_state=settings.random_state, n_init=settings.n_init
    )
    log.info("evaluated k in %s on %d rows in %.1f s", list(k_values), len(sample), time.monotonic() - started)
    if settings.k is None:
        k, rationale = model_selection.choose_k(evaluations, settings.silhouette_tolerance)
        k_selection = "automatic"
    else:
        k = settings.k
        rationale = f"k = {k}: fixed by the k setting."
        k_selection = "fixed"

    model = clustering.fit_kmeans(scaled, k, random_state=settings.random_state, n_init=settings.n_init)
    labels = model.labels_
    sizes = np.bincount(labels, minlength=k)
    centroids = feature_values.groupby(labels).mean().reindex(range(k)).to_numpy()
    spread = feature_values.std(ddof=0).to_numpy()
    ids_by_label = clustering.stable_segment_ids(centroids, sizes, spread, previous, next_free_id)
    assignment = clustering.assign(model, scaled, ids_by_label)
    silhouette = evaluations.set_index("k").loc[k, "silhouette"]
    silhouette = None if pd.isna(silhouette) else float(silhouette)

    profiles = profiling.profile_segments(customers, feature_values, assignment.segment_ids)
    assignments = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "segment_id": assignment.segment_ids,
            "distance_to_centroid": assignment.distances,
            "gender": customers["gender"].to_numpy(),
            "age": customers["age"].to_numpy(),
            "annual_income_k": customers["annual_income_k"].to_numpy(),
            "spending_score": customers["spending_score"].to_numpy(),
        }
    )
    return k, k_selection, rationale, silhouette, n_imputed, evaluations, profiles, assignments


def run_once(engine: Engine, settings: Settings, csv_path: Path | None = None) -> RunOutcome:
    """The nightly job once: migrate, take the run lock, import `csv_path` if given, fit, publish."""
    db.upgrade(engine)
    with db.run_lock(engine, settings.lock_wait_seconds):
        with engine.begin() as connection:
            abandoned = publish.mark_abandoned(connection)
        if abandoned:
            log.warning("marked %d earlier run(s) that never finished as abandoned", abandoned)
        import_result = import_file(engine, csv_path, settings) if csv_path is not None else None
        with engine.begin() as connection:
            run_id = publish.start_run(
                connection,
                settings.model_dump(mode="json", exclude={"database_url", "data_dir"}),
                import_result.batch_id if import_result else None,
            )
        log.info("run %d started", run_id)
        try:
            started = time.monotonic()
            with engine.begin() as connection:
                customers = features.read_active_customers(connection)
                previous, next_free_id = publish.previous_centroids(connection, settings.features)
            log.info("run %d: read %d active customers in %.1f s", run_id, len(customers), time.monotonic() - started)
            started = time.monotonic()
            k, k_selection, rationale, silhouette, n_imputed, evaluations, profiles, assignments = segment(
                customers, settings, previous, next_free_id
            )
            log.info("run %d: %s (%.1f s)", run_id, rationale, time.monotonic() - started)
            started = time.monotonic()
            with engine.begin() as connection:
                publish.publish_results(
                    connection,
                    run_id,
                    k=k,
                    k_selection=k_selection,
                    rationale=rationale,
                    silhouette=silhouette,
                    n_imputed=n_imputed,
                    evaluations=evaluations,
                    profiles=profiles,
                    assignments=assignments,
                )
            log.info("run %d: published %d customers in %.1f s", run_id, len(assignments), time.monotonic() - started)
        except BaseException as error:
            status = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
            message = str(error) or type(error).__name__
            with engine.begin() as connection:
                publish.end_run(connection, run_id, status, db.redact(message))
            raise
    return RunOutcome(
        run_id=run_id,
        k=k,
        silhouette=silhouette,
        n_customers=len(assignments),
        rationale=rationale,
        profiles=profiles,
        evaluations=evaluations,
        import_result=import_result,
    )
