"""The `segment` command line (also `python -m jobs.nightly`).

Each command reads settings (flags > environment > TOML file > defaults), sets up logging,
calls one library function and turns any failure into a one-line reason and an exit code
(the table is in docs/operations.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from jobs import logs, notify
from jobs.nightly import ExportModeOption, NightOptions, run_night
from segmentation import db, settings as settings_module
from segmentation.display import decimals, figure, percent, printable
from segmentation.errors import Cancelled, ConfigurationError, SegmentationError

app = typer.Typer(
    help="Customer segmentation that runs itself: import a customer CSV, fit K-Means, publish segments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)
db_app = typer.Typer(help="Schema migrations and database access (read-only role for BI, psql on the embedded server).", no_args_is_help=True)
app.add_typer(db_app, name="db")
bi_app = typer.Typer(help="Dashboards as code for BI tools.", no_args_is_help=True)
app.add_typer(bi_app, name="bi")
ops_app = typer.Typer(help="Run the nightly job unattended: a systemd service and timer, or a cron line, for this installation.",
                      no_args_is_help=True)
app.add_typer(ops_app, name="ops")
# Pipes and log files get a wide, stable layout; terminals use their own width. No markup: the
# text printed is data (file names, segment names, stored errors such as "[orders] customer_id = ...").
class _PrintableConsole(Console):
    """A console printing text through `printable` (table cells: `_add_row`): data never drives the terminal."""

    def print(self, *objects, **options) -> None:
        super().print(*(printable(item) if isinstance(item, str) else item for item in objects), **options)


console = _PrintableConsole(markup=False) if sys.stdout.isatty() else _PrintableConsole(width=160, markup=False)
log = logging.getLogger("segment")


def _add_row(table: Table, *cells: str) -> None:
    table.add_row(*(printable(cell) for cell in cells))


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import version as installed_version

    return installed_version("pg-customer-segments")


def _print_version(given: bool) -> None:
    if given:
        typer.echo(f"segment (pg-customer-segments) {version()}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        Optional[bool], typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = None,
) -> None:
    """Customer segmentation that runs itself: import a customer CSV, fit K-Means, publish segments."""


def load_settings(**flags) -> settings_module.Settings:
    """The settings (flags > environment > file), with logging set up as they say (log_file, log_format)."""
    settings = settings_module.load_settings(**flags)
    logs.configure(settings)
    return settings


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {printable(db.redact(' '.join(str(message).split())))}", err=True)
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
        logs.configure()
        try:
            return function(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt, Cancelled) as error:
            if not isinstance(error, (SegmentationError, KeyboardInterrupt, Cancelled)):
                log.debug("failure", exc_info=True)
            _fail(notify.reason_of(error), notify.exit_code_of(error))

    return wrapper


def night_options(function):
    """Give a command the flags of a night, NightOptions' fields as `segment run` has them, and
    pass them to it as one `options: NightOptions` argument (its own parameters stay as they are)."""
    night = typing.get_type_hints(NightOptions, include_extras=True)
    flags = [
        inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=night[field.name])
        for field in dataclasses.fields(NightOptions)
    ]
    own_types = typing.get_type_hints(function, include_extras=True)
    own = [
        parameter.replace(annotation=own_types[parameter.name], kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in inspect.signature(function).parameters.values() if parameter.name != "options"
    ]

    @functools.wraps(function)
    def wrapper(**given):
        options = NightOptions(**{parameter.name: given.pop(parameter.name) for parameter in flags})
        return function(options=options, **given)

    wrapper.__signature__ = inspect.Signature(flags + own)  # what Typer reads
    return wrapper


@app.command()
@command
@night_options
def run(
    options: NightOptions,
    preview: Annotated[
        bool, typer.Option("--preview", help="fit, profile and write the report, but publish nothing"
                           " (e.g. to look at another --k)")
    ] = False,
) -> None:
    """The nightly job once: migrate, import --csv and --orders (or read the `source` table), fit, publish, print the segments, write the report.

    The data set is declared in segment.toml (a dataset table, features, source, orders); see docs/your-data.md and docs/orders.md.
    """
    from segmentation.errors import RunHeld

    settings = load_settings(**options.setting_flags(), preview=preview or None)
    _stop_on_sigterm()
    try:
        outcome = run_night(settings, options)
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
    from segmentation.publish.views import schema_name

    title = {"published": f" ({schema_name(outcome.segmentation)}.current_segment_profiles)",
             "preview": " (preview, not published)"}
    table = Table(title="Segments" + title.get(outcome.status, " (held, not published)"))
    numeric = _numeric_feature_means(outcome)
    places = {header: decimals(numeric[header]) for header in numeric.columns}  # as the views round them
    for header in ("id", "name", "customers", "share", *numeric.columns, "what sets it apart"):
        table.add_column(header, overflow="fold")
    for row in outcome.profiles.itertuples():
        _add_row(
            table,
            str(row.segment_id),
            row.segment_name,
            str(row.customer_count),
            f"{percent(row.customer_share)}%",  # as the views' customer_share_pct
            *("-" if value is None or value != value else figure(value, places[header])
              for header, value in numeric.loc[row.segment_id].items()),
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
    segmentation: Annotated[Optional[str], typer.Option("--segmentation", help="the segmentation to import into (default: the segmentation setting, else 'default')")] = None,
) -> None:
    """Import a customer CSV into the segmentation's customers (no fit); the next `segment run` segments them."""
    from segmentation.ingest import import_file

    settings = load_settings(export_mode=export_mode, segmentation=segmentation)
    _import_under_lock(
        settings, lambda engine, segmentation_id: import_file(engine, path, settings.for_customer_import(), segmentation_id)
    )


def _import_under_lock(settings, load) -> None:
    """Run `load(engine, segmentation_id)` (an import) under the run lock after migrating and
    checking the declaration against the segmentation's, then print its accounting."""
    from segmentation import segmentations

    _stop_on_sigterm()
    with db.database(settings) as engine:
        with db.run_lock(engine, settings.lock_wait_seconds) as lock:
            db.upgrade(engine)
            lock.after_upgrade()
            with engine.begin() as connection:
                db.mark_abandoned(connection)
            with engine.begin() as connection:
                found = segmentations.resolve(connection, settings)
            result = load(engine, found.segmentation_id)
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
    segmentation: Annotated[Optional[str], typer.Option("--segmentation", help="the segmentation to import into (default: the segmentation setting, else 'default')")] = None,
) -> None:
    """Import an order CSV into the segmentation's orders (no fit); `segment run` then segments on RFM."""
    from segmentation.orders.ingest import import_orders as import_order_file

    settings = load_settings(segmentation=segmentation)
    if settings.order_spec is None:
        settings = settings.with_orders()
    _import_under_lock(settings, lambda engine, segmentation_id: import_order_file(
        engine, path, settings.order_spec, settings.declaration.id_type, segmentation_id, **settings.order_reading))


@app.command()
@command
@night_options
def schedule(
    options: NightOptions,
    cron: Annotated[Optional[str], typer.Option("--cron", help="crontab expression, default '0 2 * * *'")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", help="IANA time zone, default UTC")] = None,
) -> None:
    """Run the nightly job (the flags of `segment run`) on a cron schedule until stopped (SIGTERM or Ctrl-C)."""
    from jobs.schedule import run_schedule

    settings = load_settings(schedule_cron=cron, timezone=timezone, **options.setting_flags())
    with db.database(settings) as engine:
        db.upgrade(engine)

        def job():
            return run_night(settings, options, engine)

        def last_run_started():
            import sqlalchemy as sa

            with engine.connect() as connection:
                return connection.execute(sa.text(
                    "select max(runs.started_at) from segmentation_internal.runs as runs"
                    " join segmentation_internal.segmentations as names using (segmentation_id) where names.name = :name"
                ), {"name": settings.segmentation}).scalar()

        run_schedule(settings, job, last_run_started)


@app.command()
@command
def runs(
    limit: Annotated[int, typer.Option("--limit", help="how many runs, newest first")] = 20,
    segmentation: Annotated[
        Optional[str], typer.Option("--segmentation", help="only this segmentation's runs (default: every one)")
    ] = None,
) -> None:
    """Recent runs with segmentation, status, k, silhouette and customers."""
    from segmentation.publish import recent_runs

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = recent_runs(connection, limit, segmentation)
    table = Table(title="Runs (segmentation.run_history)")
    for header in ("run", "segmentation", "status", "started", "published", "k", "silhouette", "customers",
                   "model", "features", "error"):
        table.add_column(header, overflow="fold")
    for row in rows:
        _add_row(
            table,
            str(row.run_id),
            row.segmentation,
            row.status,
            f"{row.started_at:%Y-%m-%d %H:%M:%S}",
            "" if row.published_at is None else f"{row.published_at:%Y-%m-%d %H:%M:%S}",
            "" if row.k is None else str(row.k),
            "" if row.silhouette is None else f"{row.silhouette:.3f}",
            "" if row.n_customers is None else str(row.n_customers),
            "" if row.model is None else f"{row.model}, {row.n_reassigned or 0:,} assigned, {row.n_moved or 0:,} moved",
            ", ".join(row.features or ()) + (f" (from {row.source_name})" if row.source_name else ""),
            row.error or (f"published by --force-publish despite: {row.forced_reason}" if row.forced_reason else ""),
        )
    console.print(table)


@app.command("segmentations")
@command
def segmentations_command() -> None:
    """The segmentations in the database: name, views schema, version, input, features, latest published run."""
    from segmentation import segmentations

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = segmentations.listing(connection)
    table = Table(title="Segmentations (segmentation.segmentations)")
    for header in ("segmentation", "views in schema", "version", "input", "features", "last published run",
                   "published", "k", "customers"):
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(
            row.segmentation, row.schema_name, str(row.version), row.input, ", ".join(row.features or ()),
            "" if row.last_published_run_id is None else str(row.last_published_run_id),
            "" if row.last_published_at is None else f"{row.last_published_at:%Y-%m-%d %H:%M:%S}",
            "" if row.k is None else str(row.k),
            "" if row.customer_count is None else f"{row.customer_count:,}",
        )
    console.print(table)


@app.command("drop")
@command
def drop_command(
    name: Annotated[str, typer.Argument(help="the segmentation to remove with all its data and views")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation (for scripts)")] = False,
) -> None:
    """Remove a segmentation: its customers, orders, runs, history, import batches and views (schema segments_NAME)."""
    from segmentation import segmentations

    settings = load_settings()
    segmentations.check_name(name)
    with db.database(settings) as engine:
        with db.run_lock(engine, settings.lock_wait_seconds) as lock:
            db.upgrade(engine)
            lock.after_upgrade()
            with engine.connect() as connection:
                found = segmentations.find(connection, name)
            if found is None:
                raise SegmentationError(f"there is no segmentation {name!r}; see segment segmentations")
            if not yes and not typer.confirm(
                f"Remove segmentation {name} with all its customers, runs, history and views?"
            ):
                console.print(f"segmentation {name} kept: nothing removed")
                raise typer.Exit(1)
            with engine.begin() as connection:
                removed = segmentations.drop(connection, name)
    console.print(
        f"segmentation {name} removed: {removed['runs']} runs, {removed['customers']:,} customers,"
        f" {removed['order_lines']:,} order lines, {removed['imports']} imports"
    )


@app.command()
@command
def report(
    run_id: Annotated[Optional[int], typer.Argument(help="run to report on; default: the latest published run")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file to write", dir_okay=False)] = None,
    segmentation: Annotated[
        Optional[str],
        typer.Option("--segmentation", help="without RUN_ID: this segmentation's latest published run (default: any)"),
    ] = None,
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
                    sa.text("select run_id from segmentation.run_history where status = 'published'"
                            " and (cast(:name as text) is null or segmentation = :name) limit 1"),
                    {"name": segmentation},
                ).scalar()
                if run_id is None:
                    where = f" in segmentation {segmentation!r}" if segmentation else ""
                    raise SegmentationError(f"no published run yet{where}; run `segment run --csv PATH` first")
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


@db_app.command("reset")
@command
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Delete everything the job keeps in the database (schemas segmentation and segmentation_internal: every run, customer, order and view) and the reader role if no other database uses it.

    The embedded server's data folder and the reports stay; docs/operations.md says how to remove them too.
    """
    settings = load_settings()
    with db.database(settings) as engine:
        target = f"database {engine.url.database} on {db.describe_target(engine)}"
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigurationError(f"segment db reset deletes every run and customer in {target}; add --yes to confirm")
            if not typer.confirm(f"Delete every run, customer, order and view of the segmentation in {target}?"):
                typer.echo("nothing was deleted")
                raise typer.Exit(1)
        with db.run_lock(engine, settings.lock_wait_seconds) as lock:
            dropped, role_kept = db.reset(lock)
    console.print(f"dropped schema(s) {', '.join(dropped) or '(none: already empty)'} of {target}")
    if role_kept:
        console.print(f"kept role {db.READER_ROLE}: {role_kept}")
    else:
        console.print(f"dropped role {db.READER_ROLE}")


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
    """Write a Superset import bundle: the database entry, and per segmentation a dataset per view, charts and a dashboard with filters (docs/dashboards.md).

    Import it with `superset import-dashboards -p FILE -u ADMIN` or the UI (Dashboards > Import), then set the password of the database "Customer segments (DATABASE)" in Superset (the bundle carries a placeholder).
    """
    from segmentation.bi.superset import database_name, write_bundle

    settings = load_settings()
    with db.database(settings) as engine:
        db.upgrade(engine)
        with engine.connect() as connection:
            charts = write_bundle(connection, engine.url, settings.declaration, out, user, settings.max_size_psi)
    console.print(f"wrote {out}: {charts} charts (a dashboard per segmentation) on the segmentation views of "
                  f"{engine.url.database}; "
                  f"import it with `superset import-dashboards -p {out} -u ADMIN`, then set the password of "
                  f"the database \"{database_name(engine.url)}\" (user {user}) in Superset")


EnvFileOption = Annotated[
    Optional[Path],
    typer.Option("--env-file", dir_okay=False,
                 help="write secrets (a password in DATABASE_URL, notify settings) to this mode-600 file, which the night reads"),
]


@ops_app.command("systemd")
@command
@night_options
def ops_systemd(
    options: NightOptions,
    user: Annotated[Optional[str], typer.Option("--user", help="the system user the night runs as (User=)")] = None,
    name: Annotated[str, typer.Option("--name", help="unit name: NAME.service and NAME.timer")] = "segment-nightly",
    calendar: Annotated[
        Optional[str], typer.Option("--on-calendar", help="systemd calendar; default: schedule_cron in timezone")
    ] = None,
    env_file: EnvFileOption = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out-dir", help="write the two unit files here (e.g. /etc/systemd/system) instead of printing them", file_okay=False)
    ] = None,
) -> None:
    """A systemd service (`segment run` with these flags, this installation's paths and settings) and a timer on schedule_cron."""
    from jobs import ops

    settings = load_settings(**options.setting_flags())
    plain, environment_file = _night_environment(ops, env_file)
    units = ops.systemd_units(
        name, [*ops.segment_command(), "run", *options.command_line()], settings, plain, environment_file, user, calendar
    )
    if out_dir is None:
        for file_name, text in units.items():
            console.print(f"# --- {file_name} ---\n{text}")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in units.items():
        (out_dir / file_name).write_text(text, encoding="utf-8")
    console.print(f"wrote {', '.join(str(out_dir / file_name) for file_name in units)}; start the schedule with:")
    console.print(f"  systemctl daemon-reload && systemctl enable --now {name}.timer")
    console.print(f"  systemctl start {name}.service   # one night now; journalctl -u {name}.service shows its log")


@ops_app.command("cron")
@command
@night_options
def ops_cron(
    options: NightOptions,
    env_file: EnvFileOption = None,
) -> None:
    """A crontab line (`segment run` with these flags, this installation's paths and settings) on schedule_cron; add it with `crontab -e`."""
    from jobs import ops

    settings = load_settings(**options.setting_flags())
    plain, environment_file = _night_environment(ops, env_file)
    log_file = settings.log_file or settings.data_dir / "logs" / "segment.log"
    entry = ops.cron_entry([*ops.segment_command(), "run", *options.command_line()], settings, plain,
                           environment_file, log_file.absolute())
    typer.echo(entry, nl=False)


def _night_environment(ops, env_file: Path | None) -> tuple[dict[str, str], Path | None]:
    """The plain variables for the unit or line; secrets written to `env_file` (required if any)."""
    plain, secret = ops.night_environment()
    if not secret:
        return plain, None
    if env_file is None:
        raise ConfigurationError(
            f"{', '.join(sorted(secret))} may hold a secret, which a unit file or crontab must not show;"
            " add --env-file PATH (written with mode 600) to keep it there"
        )
    ops.write_environment_file(env_file, secret)
    typer.echo(f"wrote {', '.join(sorted(secret))} to {env_file} (mode 600)", err=True)
    return plain, env_file.absolute()


@app.command()
@command
def paths() -> None:
    """Where this installation keeps things: configuration, data, logs, reports, the sample, SQL files and migrations."""
    import migrations
    import sql
    from jobs import ops
    from segmentation.sample import packaged_sample

    settings = load_settings()
    config = os.environ.get("SEGMENT_CONFIG") or (str(settings_module.DEFAULT_CONFIG_FILE.absolute())
                                                  if settings_module.DEFAULT_CONFIG_FILE.is_file() else "(none)")
    migrations_folder = Path(migrations.__file__).parent
    sql_folder = Path(next(iter(sql.__path__)))
    rows = {
        "version": version(),
        "segment": " ".join(ops.segment_command()),
        "settings file": config,
        "data folder": settings.data_dir,
        "embedded server data": settings.pgdata_dir,
        "reports": settings.reports_dir,
        "log file": settings.log_file or "(none: stderr)",
        "sample customers": packaged_sample(),
        "view SQL": sql_folder / "views",
        "dashboard queries": sql_folder / "dashboards",
        "migrations": migrations_folder,
        "alembic.ini": migrations_folder / "alembic.ini",
    }
    width = max(map(len, rows))
    for what, where in rows.items():
        typer.echo(f"{what + ':':<{width + 1}} {where}")


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
