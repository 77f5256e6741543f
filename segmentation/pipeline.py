"""The nightly job as one function, shared by the command line and the scheduler.

Transactions (this module owns them all):
1. the run lock, on its own connection, for the whole run (migrations run under it);
2. a committed `running` run row;
3. import: a committed `running` batch row, then one transaction for the file's data;
4. reading a seeded sample of the customers (a `source` table's or RFM customers are first staged
   in a table of the run's, committed with the read, see `segmentation.features.staging`), then choosing
   k and fitting with no transaction open;
5. one transaction in which PostgreSQL assigns every customer into the run's new partition
   and sums the segments' statistics (`assignment`), then the profiles are written and the run
   marked published (or held): the views switch to it only when it commits;
6. dropping the run's staged customers (whatever the outcome; the next run drops those of a run
   whose process died), then after the lock: pruning old per-customer partitions and writing
   the report.
A failure anywhere leaves the previous published run current and records why.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from segmentation import db, features, ingest, profiling, publish
from segmentation.errors import (
    Cancelled,
    ConfigurationError,
    DatabaseUnavailable,
    RunHeld,
    RunLockLost,
)
from segmentation.features import staging
from segmentation.model import drift
from segmentation.model.fitting import Fitted, previous_centroids, segment
from segmentation.orders import rfm
from segmentation.orders.ingest import OrderImportResult, import_orders
from segmentation.profiling.statistics import SegmentStatistics, medians
from segmentation.publish import assignment
from segmentation.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Segmentation:
    """A run's results once every customer is assigned (the per-customer rows are already written)."""

    k: int
    k_selection: str
    rationale: str
    silhouette: float | None
    n_imputed: dict[str, int]
    evaluations: pd.DataFrame
    profiles: pd.DataFrame
    feature_rows: pd.DataFrame
    n_customers: int
    n_outliers: int
    size_psi: float | None
    max_centroid_shift: float | None


@dataclasses.dataclass
class RunOutcome:
    """What `run_once` did: the import (if any), the run id, its status and results."""

    run_id: int
    status: str
    result: Segmentation
    import_result: ingest.ImportResult | None = None
    report_path: Path | None = None
    orders_import_result: OrderImportResult | None = None

    @property
    def k(self) -> int:
        return self.result.k

    @property
    def silhouette(self) -> float | None:
        return self.result.silhouette

    @property
    def n_customers(self) -> int:
        return self.result.n_customers

    @property
    def rationale(self) -> str:
        return self.result.rationale

    @property
    def profiles(self) -> pd.DataFrame:
        return self.result.profiles


def summarise(fitted: Fitted, statistics: SegmentStatistics, settings: Settings, previous: publish.PreviousRun | None) -> Segmentation:
    """Profiles, names and drift of a run from the statistics of every customer. No I/O."""
    dataset = settings.declaration
    columns = fitted.encoder.columns
    profiles, feature_rows = profiling.profiles_from_statistics(
        statistics, medians(fitted.sample, fitted.sample_segment_ids, dataset), dataset, settings.features,
        settings.rules,
    )
    size_psi = max_shift = None
    if previous is not None:
        earlier = previous_centroids(previous, columns)
        profiles = profiling.keep_previous_names(profiles, previous.names)
        current_centroids = {
            int(row.segment_id): np.array([row.centroid[name] for name in columns]) for row in profiles.itertuples()
        }
        shifts = drift.centroid_shifts(current_centroids, earlier, statistics.spread())
        profiles["centroid_shift"] = [shifts[int(segment_id)] for segment_id in profiles["segment_id"]]
        profiles["previous_customer_count"] = [previous.sizes.get(int(segment_id)) for segment_id in profiles["segment_id"]]
        size_psi = drift.population_stability_index(
            dict(zip(profiles["segment_id"].astype(int), profiles["customer_count"])), previous.sizes
        )
        known = [shift for shift in shifts.values() if shift is not None]
        max_shift = max(known) if known else None
    else:
        profiles["centroid_shift"] = None
        profiles["previous_customer_count"] = None
    return Segmentation(
        k=fitted.k,
        k_selection=fitted.k_selection,
        rationale=fitted.rationale,
        silhouette=fitted.silhouette,
        n_imputed={name: statistics.n_imputed.get(name, 0) for name in settings.features},
        evaluations=fitted.evaluations,
        profiles=profiles,
        feature_rows=feature_rows,
        n_customers=statistics.total,
        n_outliers=int(statistics.outliers.sum()),
        size_psi=size_psi,
        max_centroid_shift=max_shift,
    )


def run_with_retries(
    engine: Engine, settings: Settings, csv_path: Path | None = None, orders_path: Path | None = None
) -> RunOutcome:
    """`run_once`, started again (with backoff) when the database connection is lost.

    A lost connection or a server restart rolls back whatever the attempt was writing, so a
    new attempt starts from a clean state; the dead attempt's run row is marked failed (or
    abandoned by the next attempt). After `db_retries` retries the last error is raised as a
    one-line SegmentationError.
    """
    attempt = 0
    while True:
        try:
            return run_once(engine, settings, csv_path, orders_path)
        except db.DATABASE_ERRORS as error:
            if not db.connection_lost(error):
                raise
            attempt += 1
            reason = db.redact(" ".join(str(getattr(error, "orig", None) or error).split()))
            if attempt > settings.db_retries:
                raise DatabaseUnavailable(
                    f"lost the database connection {attempt} time(s), giving up: {reason}"
                ) from error
            delay = settings.db_retry_delay_seconds * 2 ** (attempt - 1)
            log.warning("lost the database connection (%s); retry %d of %d in %.1f s",
                        reason, attempt, settings.db_retries, delay)
            engine.dispose()
            time.sleep(delay)


def run_once(
    engine: Engine, settings: Settings, csv_path: Path | None = None, orders_path: Path | None = None
) -> RunOutcome:
    """The nightly job once: take the run lock, migrate, import `csv_path` and `orders_path` if
    given, fit, publish.

    Migrating under the lock means two first runs started together never race on the DDL.
    Given orders (or with orders imported, no customers and no declaration), the run segments
    on recency, frequency and monetary value (see `settings_for_orders`).
    """
    for given, flag in ((csv_path, "--csv"), (orders_path, "--orders")):
        if given is not None and settings.source:
            raise ConfigurationError(
                f"{flag} {given} was given, but the source setting ({settings.source}) says to read a table instead"
            )
    if orders_path is not None and settings.order_spec is None:
        settings = settings.with_orders()
    if csv_path is not None and settings.order_spec is not None and not settings.declaration.imported().columns:
        raise ConfigurationError(
            f"--csv {csv_path} was given with orders but no [dataset] declaring the export's columns;"
            " declare them in segment.toml (see the README's \"Segment from orders\")"
        )
    with db.run_lock(engine, settings.lock_wait_seconds) as lock:
        db.upgrade(engine)
        lock.after_upgrade()
        if csv_path is None:
            with engine.connect() as connection:
                settings = settings_for_orders(connection, settings)
        with engine.begin() as connection:
            abandoned_runs, abandoned_batches = db.mark_abandoned(connection)
            leftovers = staging.drop_leftovers(connection)
        if abandoned_runs or abandoned_batches:
            log.warning("marked %d run(s) and %d import(s) whose process died as abandoned",
                        abandoned_runs, abandoned_batches)
        if leftovers:
            log.warning("dropped the staged customers of run(s) whose process died: %s", ", ".join(leftovers))
        dataset = settings.declaration
        with engine.begin() as connection:
            run_id = publish.start_run(
                connection, settings.model_dump(mode="json", exclude={"database_url", "data_dir"}), None, dataset,
                settings.source,
            )
        log.info("run %d started", run_id)
        try:
            import_result = orders_result = None
            if csv_path is not None:
                import_result = ingest.import_file(engine, csv_path, settings.for_customer_import())
                with engine.begin() as connection:
                    publish.link_batch(connection, run_id, import_result.batch_id)
                log.info("run %d: import %s: %s", run_id, csv_path, import_result.summary())
                hold_for_rejects(engine, settings, run_id, import_result)
            if orders_path is not None:
                orders_result = import_orders(engine, orders_path, settings.order_spec, dataset.id_type)
                with engine.begin() as connection:
                    connection.execute(
                        sa.text("update segmentation_internal.runs set orders_batch_id = :batch_id where run_id = :run_id"),
                        {"batch_id": orders_result.batch_id, "run_id": run_id},
                    )
                log.info("run %d: import %s: %s", run_id, orders_path, orders_result.summary())
                hold_for_rejects(engine, settings, run_id, orders_result)
            started = time.monotonic()
            with engine.begin() as connection:
                if settings.order_spec is not None:
                    imported = dataset.imported()
                    dataset_id = ingest.ensure_dataset(connection, imported) if imported.columns else None
                    read = rfm.stage_customers(connection, dataset, dataset_id, settings.as_of, run_id)
                    customers, n_customers = staging.relation(run_id), read.n_customers
                    connection.execute(
                        sa.text("update segmentation_internal.runs set as_of = :as_of where run_id = :run_id"),
                        {"as_of": read.as_of, "run_id": run_id},
                    )
                    log.info("run %d: recency, frequency and monetary value as of %s", run_id, read.as_of)
                elif settings.source:
                    customers = staging.create(connection, run_id)
                    with engine.connect() as reader:
                        n_customers = features.stage_source(connection, reader, settings.source, dataset, customers)
                else:
                    dataset_id = ingest.ensure_dataset(connection, dataset)
                    customers = features.imported_customers(dataset_id)
                    n_customers, other = features.count_active_customers(connection, dataset_id)
                    if other:
                        log.warning(
                            "run %d: %d active customer(s) were imported under another data-set declaration and are"
                            " left out; import a file under this declaration to replace them", run_id, other,
                        )
                sample = features.read_sample(
                    connection, dataset, customers, settings.fit_sample_size, n_customers, settings.random_state
                )
                previous, next_free_id = publish.previous_run(connection, settings.features, dataset.fingerprint())
            log.info("run %d: read %d active customers, a sample of %d to fit on (%.1f s)",
                     run_id, n_customers, len(sample), time.monotonic() - started)
            started = time.monotonic()
            fitted = segment(sample, n_customers, settings, previous, next_free_id)
            log.info("run %d: fit (%.1f s): %s", run_id, time.monotonic() - started, fitted.rationale)
            started = time.monotonic()
            with engine.begin() as connection:
                lock.check(connection)
                written = assignment.assign(connection, fitted, dataset, customers, run_id)
                if written != fitted.n_customers:  # customers changed under the run lock: never publish half
                    raise RuntimeError(f"assigned {written} customers, but {fitted.n_customers} were counted before the fit")
                statistics = assignment.statistics(connection, run_id, fitted.encoder, dataset)
                log.info("run %d: assigned %d customers (%.1f s)", run_id, written, time.monotonic() - started)
                result = summarise(fitted, statistics, settings, previous)
                problems = drift.health_problems(
                    result.silhouette,
                    result.size_psi,
                    min_silhouette=settings.min_silhouette,
                    max_size_psi=settings.max_size_psi,
                )
                if problems and settings.force_publish:
                    log.warning("run %d: publishing despite %s (force_publish)", run_id, "; ".join(problems))
                status = "held" if problems and not settings.force_publish else "published"
                lock.check(connection)
                publish.store_results(
                    connection,
                    run_id,
                    status=status,
                    run_fields={
                        "k": result.k,
                        "k_selection": result.k_selection,
                        "rationale": result.rationale,
                        "silhouette": result.silhouette,
                        "n_imputed": result.n_imputed,
                        "size_psi": result.size_psi,
                        "max_centroid_shift": result.max_centroid_shift,
                        "n_outliers": result.n_outliers,
                        "error": "; ".join(problems) if status == "held" else None,
                        "reject_share": max(
                            (import_result_share(given) for given in (import_result, orders_result) if given),
                            default=None,
                        ),
                    },
                    evaluations=result.evaluations,
                    profiles=result.profiles,
                    feature_rows=result.feature_rows,
                    n_customers=result.n_customers,
                    dataset=dataset,
                )
            log.info("run %d: %s %d customers (%.1f s)", run_id, status, result.n_customers, time.monotonic() - started)
        except BaseException as error:
            status = "cancelled" if isinstance(error, (KeyboardInterrupt, Cancelled)) else "failed"
            if isinstance(error, RunLockLost):
                log.error("run %d: %s", run_id, error)
            message = str(error) or type(error).__name__
            try:
                with engine.begin() as connection:
                    publish.end_run(connection, run_id, status, db.redact(" ".join(message.split())))
            except Exception:  # e.g. the server is gone: the next run marks this one abandoned
                log.warning("run %d: could not record its %s status", run_id, status)
            raise
        finally:
            if settings.source or settings.order_spec is not None:
                drop_staged_customers(engine, run_id)
        prune_customer_rows(engine, settings, run_id)
    report_path = write_run_report(engine, settings, run_id) if settings.write_report else None
    outcome = RunOutcome(
        run_id=run_id,
        status=status,
        result=result,
        import_result=import_result,
        report_path=report_path,
        orders_import_result=orders_result,
    )
    if status == "held":
        raise RunHeld(
            f"run {run_id} held, not published: {'; '.join(problems)}. The previous run stays current;"
            " rerun with --force-publish to publish anyway",
            outcome,
        )
    return outcome


def settings_for_orders(connection: sa.Connection, settings: Settings) -> Settings:
    """`settings` segmenting on the orders when nothing else is declared and only orders were imported.

    So that `segment import-orders FILE` then `segment run` works without a segment.toml: no
    `[dataset]`, `[orders]` or `source`, no active customer, at least one order line.
    """
    if settings.order_spec is not None or settings.source or settings.dataset:
        return settings
    only_orders = connection.execute(
        sa.text(
            "select exists (select 1 from segmentation_internal.orders)"
            " and not exists (select 1 from segmentation_internal.customers where is_active)"
        )
    ).scalar_one()
    return settings.with_orders() if only_orders else settings


def import_result_share(result: ingest.ImportResult) -> float:
    """Rejected lines as a share of the lines read (0 for an empty file)."""
    return result.rows_rejected / result.rows_read if result.rows_read else 0.0


def hold_for_rejects(engine: Engine, settings: Settings, run_id: int, result: ingest.ImportResult) -> None:
    """Hold the run (stored, not published) when the import rejected too many lines."""
    share = import_result_share(result)
    if share <= settings.max_reject_share:
        return
    reasons = getattr(result, "top_reasons", None) or []
    common = "; ".join(f"{reason} ({count})" for reason, count in reasons[:3])
    message = (
        f"run {run_id} held, not published: the import rejected {result.rows_rejected} of {result.rows_read} lines"
        f" ({share:.1%}, above max_reject_share {settings.max_reject_share:.1%})"
        + (f"; most common: {common}" if common else "")
        + f". See segmentation_internal.import_rejects where batch_id = {result.batch_id}; the previous run stays current"
    )
    with engine.begin() as connection:
        publish.end_run(connection, run_id, "held", message)
    raise RunHeld(message, None)


def drop_staged_customers(engine: Engine, run_id: int) -> None:
    """Drop the run's staged customers (a source table's or RFM, see `segmentation.features.staging`)
    once the run has ended, whatever its outcome. If the server cannot be reached, the next
    run drops them (`staging.drop_leftovers`)."""
    try:
        with engine.begin() as connection:
            staging.drop(connection, run_id)
    except Exception as error:
        log.warning("run %d: could not drop its staged customers (the next run will): %s",
                    run_id, db.redact(" ".join(str(error).split())))


def write_run_report(engine: Engine, settings: Settings, run_id: int) -> Path | None:
    """Write the run's HTML report and record its path; a failure here never fails the run."""
    try:
        from segmentation import report

        path = settings.report_path(db.database_folder_name(engine.url), run_id)
        with engine.begin() as connection:
            report.write_report(connection, run_id, path)
            publish.record_report(connection, run_id, str(path))
        log.info("run %d: report written to %s", run_id, path)
        return path
    except Exception as error:  # the segments are published; the report is a convenience
        log.warning("run %d: could not write the report: %s", run_id, error)
        return None


def prune_customer_rows(engine: Engine, settings: Settings, run_id: int) -> None:
    """Drop per-customer rows of runs older than the newest `keep_customer_rows_runs`.

    Each run's rows are one partition, so pruning is a DROP TABLE, never a mass DELETE. The
    two latest published runs always stay (`segment_transitions` compares them). The
    statement waits at most `prune_lock_timeout` for dashboards' queries; if it cannot get
    its brief lock in time the pruning is left for the next night.
    """
    try:
        with engine.begin() as connection:
            dropped = publish.prune_customer_rows(connection, settings.keep_customer_rows_runs)
        if dropped:
            log.info("run %d: pruned per-customer rows of run(s) %s", run_id, ", ".join(map(str, dropped)))
    except sa.exc.DBAPIError as error:
        log.warning("run %d: pruning postponed to the next run: %s", run_id, " ".join(str(error.orig).split()))
