"""The nightly job as one function, shared by the command line and the scheduler.

Transactions (this module owns them all):
1. the run lock, on its own connection, for the whole run (migrations run under it);
2. the segmentation named by the settings, created on its first run, or the run refused when
   its declaration changed (`segmentations.resolve`), committed before anything is imported;
3. a committed `running` run row;
4. import: a committed `running` batch row, then one transaction for the file's data;
5. reading a seeded sample of the customers (a `source` table's or RFM customers are first staged
   in a table of the run's, committed with the read, see `segmentation.features.staging`), then
   keeping the published model if a refit would not move it (`model.keeping`), else choosing k
   and fitting, with no transaction open;
6. one transaction in which PostgreSQL assigns the customers (every one, or only those that
   changed when the model was kept: `publish.writing`) and sums the segments' statistics, then
   the profiles are written, the assignment and each customer's history updated
   (`publish.history`) and the run marked published (or held): the views switch only when it
   commits;
7. dropping the run's own tables (whatever the outcome; the next run drops those of a run whose
   process died), then after the lock: dropping assignments no view shows any more, history
   past `history_days`, and writing the report.
A failure anywhere leaves the previous published run current and records why.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Engine

from segmentation import citus, db, features, ingest, profiling, publish, segmentations
from segmentation.errors import (
    Cancelled,
    ConfigurationError,
    DatabaseUnavailable,
    RunHeld,
    RunLockLost,
    describe,
    stop_in,
)
from segmentation.features import staging
from segmentation.ingest.filetype import check_readable
from segmentation.model import drift, keeping
from segmentation.model.fitting import Fitted, previous_centroids, segment
from segmentation.orders import latest_order_date, rfm
from segmentation.orders.ingest import OrderImportResult, import_orders
from segmentation.profiling.statistics import SegmentStatistics, medians
from segmentation.publish import history, views, writing
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
    segmentation: str = "default"

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
    engine: Engine, settings: Settings, csv_path: Path | None = None, orders_path: Path | None = None,
    new_version: bool = False,
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
            return run_once(engine, settings, csv_path, orders_path, new_version)
        except db.DATABASE_ERRORS as error:
            if stop_in(error) is not None or not db.connection_lost(error):  # a stop is never retried
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


@dataclasses.dataclass
class _Read:
    """What the read stage gives the fit and the publish."""

    customers: sql.Composable  # a relation of (customer_id, attributes): every customer of the run
    n_customers: int
    sample: pd.DataFrame
    dataset_id: int | None  # the declaration's row, for customers imported from a file
    previous: publish.PreviousRun | None
    next_free_id: int
    latest: sa.Row | None  # the segmentation's latest published run (run_id, generation_id)
    through_batch_id: int | None  # the last customer import this run's assignment covers
    foreign_version: int | None  # writes to customers from outside the job, counted
    reliable_batches: bool  # changed customers can be told by their import batch


def _check_inputs(settings: Settings, csv_path: Path | None, orders_path: Path | None) -> Settings:
    for given, flag in ((csv_path, "--csv"), (orders_path, "--orders")):
        if given is not None and settings.source:
            raise ConfigurationError(
                f"{flag} {given} was given, but the source setting ({settings.source}) says to read a table instead"
            )
        if given is not None:  # before the run lock and any run or batch row
            check_readable(given, flag)
    if orders_path is not None and settings.order_spec is None:
        settings = settings.with_orders()
    if csv_path is not None and settings.order_spec is not None and not settings.declaration.imported().columns:
        raise ConfigurationError(
            f"--csv {csv_path} was given with orders but no [dataset] declaring the export's columns;"
            " declare them in segment.toml (see docs/orders.md)"
        )
    return settings


def run_once(
    engine: Engine, settings: Settings, csv_path: Path | None = None, orders_path: Path | None = None,
    new_version: bool = False,
) -> RunOutcome:
    """The nightly job once for the segmentation `settings.segmentation`: take the run lock,
    migrate, check the declaration against the segmentation's (`new_version` starts its next
    version), import `csv_path` and `orders_path` if given, fit (or keep the published model),
    publish.

    Migrating under the lock means two first runs started together never race on the DDL.
    Given orders (or with orders imported, no customers and no declaration), the run segments
    on recency, frequency and monetary value (see `settings_for_orders`).
    """
    settings = _check_inputs(settings, csv_path, orders_path)
    with db.run_lock(engine, settings.lock_wait_seconds) as lock:
        db.upgrade(engine)
        lock.after_upgrade()
        if csv_path is None:
            with engine.connect() as connection:
                settings = settings_for_orders(connection, settings)
        with engine.begin() as connection:
            abandoned_runs, abandoned_batches = db.mark_abandoned(connection)
            leftovers = staging.drop_leftovers(connection) + history.drop_leftovers(connection)
        if abandoned_runs or abandoned_batches:
            log.warning("marked %d run(s) and %d import(s) whose process died as abandoned",
                        abandoned_runs, abandoned_batches)
        if leftovers:
            log.warning("dropped the tables of run(s) whose process died: %s", ", ".join(leftovers))
        with engine.begin() as connection:  # refused here, before anything is imported, if the declaration changed
            segmentation = segmentations.resolve(connection, settings, new_version)
        dataset = settings.declaration
        with engine.begin() as connection:
            run_id = publish.start_run(
                connection, settings.model_dump(mode="json", exclude={"database_url", "data_dir"}), None, dataset,
                settings.source, segmentation.segmentation_id,
            )
        log.info("run %d started (segmentation %s)", run_id, segmentation.name)
        try:
            import_result, orders_result = _imports(engine, settings, run_id, segmentation.segmentation_id,
                                                     csv_path, orders_path)
            started = time.monotonic()
            read = _read(engine, settings, run_id, segmentation.segmentation_id)
            log.info("run %d: read %d active customers, a sample of %d to fit on (%.1f s)",
                     run_id, read.n_customers, len(read.sample), time.monotonic() - started)
            started = time.monotonic()
            fitted, kept = _fit(read, settings)
            log.info("run %d: fit (%.1f s): %s", run_id, time.monotonic() - started, fitted.rationale)
            started = time.monotonic()
            status, result, problems, assigned = _assign_and_publish(
                engine, lock, settings, segmentation, run_id, read, fitted, kept, (import_result, orders_result)
            )
            log.info("run %d: %s %d customers, %s (%.1f s)", run_id, status, result.n_customers, assigned.why,
                     time.monotonic() - started)
        except BaseException as error:
            stopped = stop_in(error)
            status = ("cancelled" if stopped is not None
                      else "held" if isinstance(error, RunHeld) else "failed")
            if isinstance(error, RunLockLost):
                log.error("run %d: %s", run_id, error)
            message = ("interrupted (Ctrl-C)" if isinstance(stopped, KeyboardInterrupt)
                       else "stopped by SIGTERM" if isinstance(stopped, Cancelled) else describe(error))
            try:
                with engine.begin() as connection:
                    publish.end_run(connection, run_id, status, db.redact(" ".join(message.split())))
            except Exception:  # e.g. the server is gone: the next run marks this one abandoned
                log.warning("run %d: could not record its %s status", run_id, status)
            raise
        finally:
            drop_run_tables(engine, run_id, staged=bool(settings.source or settings.order_spec is not None))
        prune(engine, settings, run_id, segmentation.segmentation_id)
    report_path = write_run_report(engine, settings, run_id) if settings.write_report else None
    outcome = RunOutcome(
        run_id=run_id,
        status=status,
        result=result,
        import_result=import_result,
        report_path=report_path,
        orders_import_result=orders_result,
        segmentation=segmentation.name,
    )
    if status == "held" and not settings.preview:
        raise RunHeld(f"run {run_id} held, not published: {'; '.join(problems)}. " + drift.how_to_explore(result), outcome)
    if settings.preview:
        outcome.status = "preview"
    return outcome


def _imports(engine: Engine, settings: Settings, run_id: int, segmentation_id: int,
             csv_path: Path | None, orders_path: Path | None):
    """Import the run's files into the segmentation (each its own transactions); hold the run
    when an import rejected too many lines."""
    import_result = orders_result = None
    if csv_path is not None:
        import_result = ingest.import_file(engine, csv_path, settings.for_customer_import(), segmentation_id)
        with engine.begin() as connection:
            publish.link_batch(connection, run_id, import_result.batch_id)
        log.info("run %d: import %s: %s", run_id, csv_path, import_result.summary())
        hold_for_rejects(engine, settings, run_id, import_result)
    if orders_path is not None:
        orders_result = import_orders(engine, orders_path, settings.order_spec, settings.declaration.id_type,
                                      segmentation_id, **settings.order_reading)
        with engine.begin() as connection:
            connection.execute(
                sa.text("update segmentation_internal.runs set orders_batch_id = :batch_id where run_id = :run_id"),
                {"batch_id": orders_result.batch_id, "run_id": run_id},
            )
        log.info("run %d: import %s: %s", run_id, orders_path, orders_result.summary())
        hold_for_rejects(engine, settings, run_id, orders_result)
    return import_result, orders_result


def _read(engine: Engine, settings: Settings, run_id: int, segmentation_id: int) -> _Read:
    """The run's customers (imported, staged from a source or from orders), their count and the
    seeded sample the fit sees, and what the segmentation published before."""
    dataset = settings.declaration
    dataset_id = None
    with engine.begin() as connection:
        if settings.order_spec is not None:
            imported = dataset.imported()
            dataset_id = ingest.ensure_dataset(connection, imported) if imported.columns else None
            read = rfm.stage_customers(connection, dataset, dataset_id, settings.as_of, run_id, segmentation_id,
                                       latest_order_date(settings.order_date_tolerance_days))
            customers, n_customers = staging.relation(run_id), read.n_customers
            connection.execute(
                sa.text("update segmentation_internal.runs set as_of = :as_of where run_id = :run_id"),
                {"as_of": read.as_of, "run_id": run_id},
            )
            log.info("run %d: recency, frequency and monetary value as of %s", run_id, read.as_of)
            dataset_id = None  # the run's customers are staged: changed ones are found by comparison
        elif settings.source:
            customers = staging.create(connection, run_id)
            with engine.connect() as reader:
                n_customers = features.stage_source(connection, reader, settings.source, dataset, customers)
        else:
            dataset_id = ingest.ensure_dataset(connection, dataset)
            db.ensure_partition(connection, "customers", segmentation_id)
            customers = features.imported_customers(dataset_id, segmentation_id)
            n_customers, other = features.count_active_customers(connection, dataset_id, segmentation_id)
            if other:
                log.warning(
                    "run %d: %d active customer(s) were imported under another data-set declaration and are"
                    " left out; import a file under this declaration to replace them", run_id, other,
                )
        sample = features.read_sample(
            connection, dataset, customers, settings.fit_sample_size, n_customers, settings.random_state
        )
        previous, next_free_id = publish.previous_run(
            connection, settings.features, dataset.fingerprint(), segmentation_id
        )
        latest = publish.latest_published(connection, segmentation_id)
        through, foreign = connection.execute(
            sa.text(
                "select (select max(batch_id) from segmentation_internal.import_batches where segmentation_id = :id"
                "        and kind = 'customers' and status = 'succeeded'),"
                " (select version from segmentation_internal.table_versions"
                "  where table_name = 'customers' and segmentation_id = 0)"
            ),
            {"id": segmentation_id},
        ).one()
        counted = citus.foreign_writes_seen(connection)  # on Citus writes from outside the job are not
    reliable = (  # counted: changed customers are then found by comparing every one
        counted and dataset_id is not None and previous is not None and previous.through_batch_id is not None
        and previous.foreign_version == foreign
    )
    return _Read(customers, n_customers, sample, dataset_id, previous, next_free_id, latest, through, foreign, reliable)


def _fit(read: _Read, settings: Settings) -> tuple[Fitted, bool]:
    """Keep the published model when a refit would not move it (`keeping`), else choose k and fit."""
    previous = read.previous
    stored = None
    if previous is not None and previous.model is not None and read.latest is not None \
            and previous.run_id == read.latest.run_id and previous.model_fitted_at is not None:
        stored = keeping.from_json(previous.model, previous.run_id, previous.model_fitted_at,
                                   previous.model_rationale, previous.model_evaluations)
    now = datetime.datetime.now(datetime.timezone.utc)
    fitted, why = keeping.keep(stored, read.sample, read.n_customers, settings.declaration, settings, now)
    if fitted is not None:
        return fitted, True
    if stored is not None:
        log.info("refitting: %s", why)
    return segment(read.sample, read.n_customers, settings, previous, read.next_free_id), False


def _assign_and_publish(engine, lock, settings, segmentation, run_id, read, fitted, kept, imports):
    """One transaction: assign (every customer or the changed ones), sum the segments, judge the
    run's health and publish it (rows, history, views) or hold it."""
    dataset = settings.declaration
    latest_generation = read.latest.generation_id if read.latest is not None else None
    with engine.begin() as connection:
        lock.check(connection)
        assigned = writing.assign(
            connection, fitted, kept, dataset, read.customers, run_id, segmentation.segmentation_id,
            read.dataset_id, read.previous, latest_generation, read.reliable_batches,
        )
        result = summarise(fitted, assigned.statistics, settings, read.previous)
        problems = drift.health_problems(
            result.silhouette, result.size_psi, min_silhouette=settings.min_silhouette,
            max_size_psi=settings.max_size_psi, reference_silhouette=fitted.reference_silhouette,
            reference_silhouette_max=fitted.reference_silhouette_max, min_silhouette_gain=settings.min_silhouette_gain,
        )
        status, error, forced = drift.decide(problems, settings.force_publish, settings.preview)
        if forced:
            log.warning("run %d: publishing despite %s (force_publish)", run_id, forced)
        moved = None
        if status == "published":
            previous_sizes = read.previous.sizes if read.previous is not None else {}
            written = writing.publish(connection, assigned, run_id, segmentation.segmentation_id, dataset,
                                      latest_generation, previous_sizes)
            if read.latest is not None:
                history.store_transitions(connection, run_id, read.latest.run_id, written.transitions)
            moved = written.moved
            # dropping a view waits for its readers: briefly, and again later, never stalling dashboards
            recreated = db.with_lock_timeout(
                connection, lambda: views.ensure_views(connection, segmentation.target, dataset),
                what="recreate the views for the declaration",
            )
            if recreated:
                log.info("run %d: views %s of %s follow the declaration", run_id, ", ".join(recreated),
                         segmentation.target.schema)
        else:
            history.drop_run_tables(connection, run_id)
        history.store_sample(connection, run_id, fitted, dataset)
        lock.check(connection)
        model = read.previous.model if kept else keeping.to_json(fitted, settings, run_id)
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
                "error": error,
                "forced_reason": forced,
                "reject_share": max(
                    (import_result_share(given) for given in imports if given), default=None,
                ),
                "generation_id": assigned.generation_id if status == "published" else None,
                "model": model,
                "statistics": assigned.statistics.to_json(),
                "through_batch_id": read.through_batch_id,
                "foreign_version": read.foreign_version,
                "model_kept": kept,
                "n_reassigned": assigned.n_assigned,
                "n_moved": moved,
            },
            evaluations=result.evaluations,
            profiles=result.profiles,
            feature_rows=result.feature_rows,
            n_customers=result.n_customers,
        )
    return status, result, problems, assigned


def settings_for_orders(connection: sa.Connection, settings: Settings) -> Settings:
    """`settings` segmenting on the orders when nothing else is declared and only orders were
    imported into the segmentation.

    So that `segment import-orders FILE` then `segment run` works without a segment.toml: no
    `[dataset]`, `[orders]` or `source`, no active customer, at least one order line.
    """
    if settings.order_spec is not None or settings.source or settings.dataset:
        return settings
    found = segmentations.find(connection, settings.segmentation)
    if found is None:
        return settings
    only_orders = connection.execute(
        sa.text(
            "select exists (select 1 from segmentation_internal.orders where segmentation_id = :id)"
            " and not exists (select 1 from segmentation_internal.customers where segmentation_id = :id and is_active)"
        ),
        {"id": found.segmentation_id},
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
    with engine.connect() as connection:
        common = "; ".join(
            f"{reason} ({count} lines{_first_example(connection, result.batch_id, reason)})" for reason, count in reasons[:3]
        )
    message = (
        f"run {run_id} held, not published: the import rejected {result.rows_rejected} of {result.rows_read} lines"
        f" ({share:.1%}, above max_reject_share {settings.max_reject_share:.1%})"
        + (f"; most common: {common}" if common else "")
        + f". See segmentation_internal.import_rejects where batch_id = {result.batch_id}; the previous run stays current"
    )
    with engine.begin() as connection:
        publish.end_run(connection, run_id, "held", message)
    raise RunHeld(message, None)


def _first_example(connection: sa.Connection, batch_id: int, pattern: str) -> str:
    """", e.g. line 7: <the reason with its value>" for the first reject of `batch_id` matching
    `pattern` (a reason whose values are '…'), or "" when its reason shows no value."""
    if ingest.ELLIPSIS not in pattern:
        return ""
    like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace(ingest.ELLIPSIS, "%")
    found = connection.execute(
        sa.text(
            "select line_number, reason from segmentation_internal.import_rejects"
            " where batch_id = :batch_id and reason like :pattern order by line_number limit 1"
        ),
        {"batch_id": batch_id, "pattern": like},
    ).first()
    return f", e.g. line {found.line_number}: {found.reason}" if found else ""


def drop_run_tables(engine: Engine, run_id: int, staged: bool) -> None:
    """Drop the run's own tables once it has ended, whatever its outcome: its staged customers (a
    source table's or RFM, see `segmentation.features.staging`) and its changes table. If the
    server cannot be reached, the next run drops them (`drop_leftovers`)."""
    try:
        with engine.begin() as connection:
            if staged:
                staging.drop(connection, run_id)
            history.drop_run_tables(connection, run_id)
    except Exception as error:
        log.warning("run %d: could not drop its own tables (the next run will): %s",
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
        log.warning("run %d: could not write the report: %s", run_id, describe(error))
        return None


def prune(engine: Engine, settings: Settings, run_id: int, segmentation_id: int) -> None:
    """After the run: drop the segmentation's assignment tables no published run shows any more and
    its history older than `history_days`. A drop waits at most a short lock timeout for
    dashboards' queries; if it cannot get its brief lock in time it is left for the next night."""
    try:
        with engine.begin() as connection:
            generations, stretches = history.prune(
                connection, segmentation_id, settings.history_days, settings.keep_customer_rows_runs
            )
        if generations or stretches:
            log.info("run %d: dropped earlier assignment(s) %s and %d closed stretch(es) older than %d days",
                     run_id, ", ".join(map(str, generations)) or "-", stretches, settings.history_days)
    except db.DATABASE_ERRORS as error:  # e.g. a dashboard's query holds an old table: the lock timeout
        log.warning("run %d: pruning postponed to the next run: %s", run_id, db.server_message(error))
