"""One night of the job, as `segment run` and `segment schedule` both run it.

`python -m jobs.nightly ...` is the same as the `segment` command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import socket
import typing
from pathlib import Path
from typing import Annotated, ClassVar, Optional

import sqlalchemy as sa
import typer
from sqlalchemy.engine import Engine

from jobs import notify
from segmentation import db
from segmentation.errors import Cancelled, DatabaseUnavailable, DatabaseUnreachable, stop_in
from segmentation.settings import Settings

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
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="random_state of every random step")]
ExportModeOption = Annotated[
    Optional[str], typer.Option("--export-mode", help="full (default: the file is the whole customer list; missing customers become inactive) or incremental")
]
ForcePublishOption = Annotated[
    Optional[bool], typer.Option("--force-publish", help="publish even if the health gate would hold the run"
                                 " (recorded in run_history)")
]
SegmentationOption = Annotated[
    Optional[str],
    typer.Option("--segmentation", help="name of the segmentation (default: the segmentation setting, else 'default');"
                 " each name has its own declaration, customers, runs, ids, history and views"),
]
NewVersionOption = Annotated[
    bool, typer.Option("--new-version", help="the declaration changed on purpose: start the next version of the"
                       " segmentation with it (its segments are numbered afresh)"),
]


@dataclasses.dataclass(frozen=True)
class NightOptions:
    """The flags of a night, shared by `segment run`, `segment schedule` and `segment ops`: a
    field added here is a flag of all of them (`jobs.cli.night_options`).

    `csv` and `orders` are files to import and `new_version` says the declaration changed on
    purpose (`segmentations.resolve`); every other field is a setting of that name
    (flags > environment > file), so it reaches the pipeline through `Settings`.
    """

    csv: CsvOption = None
    orders: OrdersOption = None
    features: FeaturesOption = None
    k: KOption = None
    random_state: SeedOption = None
    export_mode: ExportModeOption = None
    force_publish: ForcePublishOption = None
    segmentation: SegmentationOption = None
    new_version: NewVersionOption = False

    INPUTS: ClassVar[tuple[str, ...]] = ("csv", "orders", "new_version")

    def setting_flags(self) -> dict[str, object]:
        """The fields that are settings, by setting name (None: not given)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name not in self.INPUTS}

    def command_line(self) -> list[str]:
        """The given flags as `segment run` takes them (files as absolute paths)."""
        hints = typing.get_type_hints(NightOptions, include_extras=True)
        arguments = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or value is False:  # not given (a switch is given as True)
                continue
            option = hints[field.name].__metadata__[0]
            # in Annotated[..., typer.Option("--csv")] the first name lands in `default`
            flag = next(name for name in (option.default, *option.param_decls) if str(name).startswith("--"))
            if value is True:
                arguments.append(flag)
            else:
                arguments += [flag, str(value.absolute()) if isinstance(value, Path) else str(value)]
        return arguments


def run_night(settings: Settings, options: NightOptions, engine: Engine | None = None):
    """One night: `run_with_retries` on `engine` (else on the configured database, started here),
    then a notification (`jobs.notify`) when it fails or is held, or, with notify_on = "always",
    published. Returns the pipeline's RunOutcome; raises what the pipeline raised."""
    from segmentation.pipeline import run_with_retries

    with contextlib.ExitStack() as stack:
        since = None
        try:
            if engine is None:
                engine = stack.enter_context(db.database(settings))
            since = _database_clock(engine)
            outcome = run_with_retries(engine, settings, options.csv, options.orders, options.new_version)
        except (Exception, KeyboardInterrupt, Cancelled) as error:
            run_id = _failed_run_id(error, engine, since)
            reason = notify.reason_of(error)[: notify.REASON_CHARACTERS]
            _tell(settings, notify.status_of(error), notify.exit_code_of(error), run_id, reason)
            raise
    _tell(settings, "published", 0, outcome.run_id, None)
    return outcome


def _tell(settings: Settings, status: str, exit_code: int, run_id: int | None, reason: str | None) -> None:
    database, server = notify.where(settings)
    notify.notify(settings, notify.Outcome(status, exit_code, run_id, reason, database, server))


def _database_clock(engine: Engine) -> datetime.datetime | None:
    """The server's time when the night starts (None if it cannot say: the pipeline will)."""
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("select clock_timestamp()")).scalar_one()
    except Exception:
        return None


def _failed_run_id(error: BaseException, engine: Engine | None, since: datetime.datetime | None) -> int | None:
    """The run row this process started for the night that raised `error`, if it made one."""
    held = getattr(error, "outcome", None)
    if held is not None:
        return held.run_id
    lost = stop_in(error) is None and (  # a stop mid-command breaks the driver's connection, not the server
        isinstance(error, (DatabaseUnavailable, DatabaseUnreachable))
        or (isinstance(error, db.DATABASE_ERRORS) and db.connection_lost(error))
    )
    if engine is None or since is None or lost:
        return None  # no run row yet, or a server that may not answer: do not wait for it
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "select max(run_id) from segmentation_internal.runs"
                    " where hostname = :hostname and pid = :pid and started_at >= :since"
                ),
                {"hostname": socket.gethostname(), "pid": os.getpid(), "since": since},
            ).scalar()
    except Exception:
        return None


if __name__ == "__main__":
    from jobs.cli import main

    main()
