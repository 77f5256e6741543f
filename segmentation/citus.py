"""The job on Citus (distributed PostgreSQL): which tables are distributed, and the few
statements that must be spelled differently there.

When the database has the `citus` extension (and the setting `citus` is not "off"), the
schema's upgrade (migration 0012, and every upgrade to head after it, `ensure`) makes

- the per-customer tables *distributed* by `customer_id`, all co-located with `customers`
  (shard N of each table holds the same customers, on the same worker): `customers`,
  `orders`, `current_segments` (the current assignment), `segment_stretches` (its history),
  and each run's own tables (staged customers, the assignment's changes and
  new generation: `distribute_like`, `create_table_as`). A statement that joins them on
  `customer_id` then runs on the workers, shard by shard, and only its result (a count,
  per-segment sums, a sample) comes back to the coordinator;
- the small tables *reference* tables (a copy on every node, so joins with them stay on the
  workers): segmentations, datasets, import batches and rejects, runs and their results,
  transitions, the runs' report samples (20,000 customers each, written from the client), table
  and view versions. No distributed table has a foreign key: one to a reference table would make
  Citus run every later statement of the transaction over one connection per node;
- the run lock and Alembic's version table stay plain tables of the coordinator.

Citus refuses triggers on distributed tables, so the statement triggers that count writes to
`customers` and `orders` from outside the job (migration 0010, `table_versions` under
segmentation 0) are dropped: on Citus such writes cannot be seen, so `foreign_writes_seen` is
False and the job never trusts a count of them (it compares every customer instead of
reading the changed ones by import batch: slower, the same answers).

Everything here is a no-op on a single server (`distributed` is False): the single-server
job runs exactly the statements it ran before.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.db import STAGE_SCHEMA  # where an import's stage tables live (a temporary table cannot be distributed)

log = logging.getLogger(__name__)

INTERNAL = "segmentation_internal"
#: the column every distributed table is sharded by
DISTRIBUTION_COLUMN = "customer_id"
#: the table every other distributed table is co-located with
ANCHOR = f"{INTERNAL}.customers"
#: per-customer tables, distributed by customer_id (partitioned ones: their partitions follow)
DISTRIBUTED = ("customers", "orders", "current_segments", "segment_stretches")
#: small tables, one copy on every node (in an order where a table's foreign keys point to earlier ones)
REFERENCE = (
    "segmentations", "datasets", "import_batches", "import_rejects", "runs", "k_evaluations", "segment_features",
    "segment_profiles", "segment_transitions", "run_samples", "table_versions", "view_versions",
)
#: the setting, also readable by the server session (`segmentation.citus`): "auto" or "off"
SETTING = "segmentation.citus"


def installed(connection: Connection) -> bool:
    """True when the database has the citus extension."""
    return bool(connection.exec_driver_sql("select exists (select 1 from pg_extension where extname = 'citus')").scalar())


def wanted(connection: Connection) -> bool:
    """True when the schema should be distributed: citus is there and the setting is not "off"
    (the job passes its setting to the session as `segmentation.citus`)."""
    setting = connection.exec_driver_sql("select current_setting(%s, true)", (SETTING,)).scalar()
    return (setting or "auto") != "off" and installed(connection)


def distributed(connection: Connection) -> bool:
    """True when this database's schema is distributed (its `customers` is a Citus table)."""
    if not installed(connection):
        return False
    return bool(connection.exec_driver_sql(
        "select exists (select 1 from pg_dist_partition where logicalrelid = to_regclass(%s))", (ANCHOR,)
    ).scalar())


def _citus_kind(connection: Connection, name: str) -> str | None:
    """'distributed', 'reference', 'local' (a plain table Citus manages, e.g. one a reference
    table's foreign key reached) or None (not a Citus table)."""
    row = connection.exec_driver_sql(
        "select partmethod, repmodel from pg_dist_partition where logicalrelid = to_regclass(%s)", (name,)
    ).one_or_none()
    if row is None:
        return None
    return "distributed" if row[0] == "h" else "reference" if row[1] == "t" else "local"


def _is_citus_table(connection: Connection, name: str) -> bool:
    return _citus_kind(connection, name) is not None


def _counting_triggers(connection: Connection) -> list[tuple[str, str]]:
    """(table, trigger) of every write-counting trigger on customers, orders and their partitions."""
    return [tuple(row) for row in connection.exec_driver_sql(
        "select cast(trigger.tgrelid as regclass)::text, trigger.tgname from pg_trigger as trigger"
        " join pg_class as relation on relation.oid = trigger.tgrelid"
        " where not trigger.tgisinternal and relation.relnamespace = to_regnamespace(%s)"
        " and trigger.tgname ~ '^(customers|orders)(_s[0-9]+)?_changed$'",
        (INTERNAL,),
    ).all()]


def ensure(connection: Connection) -> list[str]:
    """Distribute the schema when `wanted` and not done yet (idempotent); returns the tables it
    made Citus tables. Call it in the upgrade's transaction, on a schema at head."""
    if not wanted(connection):
        return []
    made = []
    kept = _view_descriptions(connection)
    for table, trigger in _counting_triggers(connection):
        connection.exec_driver_sql(f"drop trigger {trigger} on {table}")  # names read from the catalog above
    for table in REFERENCE:
        name = f"{INTERNAL}.{table}"
        if connection.exec_driver_sql("select to_regclass(%s) is not null", (name,)).scalar() \
                and _citus_kind(connection, name) != "reference":
            connection.exec_driver_sql("select create_reference_table(%s)", (name,))
            made.append(name)
    for table in DISTRIBUTED:
        name = f"{INTERNAL}.{table}"
        if _citus_kind(connection, name) != "distributed":
            colocate = "none" if table == "customers" else ANCHOR
            connection.exec_driver_sql(
                "select create_distributed_table(%s, %s, colocate_with => %s)", (name, DISTRIBUTION_COLUMN, colocate)
            )
            made.append(name)
    _relax_foreign_key_tracking(connection)
    # the imports' stage tables (`create_stage`): made here, since Citus cannot create a schema on the
    # workers in a transaction that has already run parallel statements
    connection.exec_driver_sql(f"create schema if not exists {STAGE_SCHEMA}")
    if made:
        _truncate_local_copies(connection, made)
        _restore(connection, kept)
        log.info("distributed the schema on Citus: %s", ", ".join(made))
    return made


def _view_descriptions(connection: Connection) -> list[tuple[str, tuple]]:
    """The comments and reader grants of the job's views, as (statement, parameters): Citus
    recreates the views that depend on a table it distributes, without them."""
    rows = connection.exec_driver_sql(
        "select format('%%I.%%I', namespace.nspname, view.relname), obj_description(view.oid, 'pg_class'),"
        " has_table_privilege(%s, view.oid, 'select'),"
        " array(select format('%%I', attribute.attname) || '=' || col_description(view.oid, attribute.attnum)"
        "       from pg_attribute as attribute where attribute.attrelid = view.oid and attribute.attnum > 0"
        "       and col_description(view.oid, attribute.attnum) is not null order by attribute.attnum)"
        " from pg_class as view join pg_namespace as namespace on namespace.oid = view.relnamespace"
        " where view.relkind = 'v' and (namespace.nspname = 'segmentation' or namespace.nspname like 'segments\\_%%')"
        " and exists (select 1 from pg_roles where rolname = %s)",
        (READER_ROLE, READER_ROLE),
    ).all()
    statements = []
    for view, comment, granted, columns in rows:
        if comment is not None:
            statements.append((f"comment on view {view} is %s", (comment,)))
        for column in columns:
            name, _, text = column.partition("=")
            statements.append((f"comment on column {view}.{name} is %s", (text,)))
        if granted:
            statements.append((f"grant select on {view} to {READER_ROLE}", ()))
    return statements


def _restore(connection: Connection, statements: list[tuple[str, tuple]]) -> None:
    raw = connection.connection.driver_connection
    for statement, parameters in statements:  # names quoted by format('%I') above
        raw.execute(sql.SQL(statement.replace("%s", "{}")).format(*map(sql.Literal, parameters)))


def _relax_foreign_key_tracking(connection: Connection) -> None:
    """Let a transaction write a reference table after a parallel statement on a distributed one.

    Citus forbids that by default for any reference table another table's foreign key points
    to (runs, import_batches, ...), in case a cascade reaches a distributed table, whose shards
    the parallel statement's other connections hold. No distributed table here has a foreign
    key, so no cascade can: the database's sessions skip that tracking
    (`citus.enforce_foreign_key_restrictions`), which the import and the publish need (they
    write customers or assignments in parallel, then their batch or run row).
    """
    connection.exec_driver_sql("select set_config('citus.enforce_foreign_key_restrictions', 'off', false)")
    name = connection.exec_driver_sql("select current_database()").scalar_one()
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(sql.SQL("alter database {} set citus.enforce_foreign_key_restrictions = off").format(
            sql.Identifier(name)))


def _truncate_local_copies(connection: Connection, names: list[str]) -> None:
    """Tables distributed with rows in them keep a hidden local copy on the coordinator: free its disk."""
    for name in names:
        if connection.exec_driver_sql(
            "select exists (select 1 from pg_dist_partition where logicalrelid = to_regclass(%s) and partmethod = 'h')",
            (name,),
        ).scalar():
            connection.exec_driver_sql("select truncate_local_data_after_distributing_table(%s)", (name,))


def undistribute(connection: Connection) -> None:
    """The downgrade of 0012: nothing on a single server; on a distributed schema, a refusal
    (Citus's `undistribute_table` cannot take the job's tables with identity columns, and the
    identity cannot be dropped on a Citus table), before anything changes."""
    if not installed(connection) or not _citus_kind(connection, f"{INTERNAL}.runs"):
        return
    raise RuntimeError(
        "this schema is distributed on Citus, which cannot turn the job's tables back into plain ones (their"
        " identity columns); to leave Citus, copy the data out (docs/citus.md)"
    )


#: the role BI tools read the views as (segmentation.db.READER_ROLE)
READER_ROLE = "segmentation_reader"


def grant_reader(connection: Connection) -> list[str]:
    """On Citus, let the reader role select the tables its views read; returns their names.

    PostgreSQL checks a view's tables against the view's owner, but Citus runs the view's query
    on the shards as the user who queries it, so the reader needs USAGE on the tables' schema
    and SELECT on each table (Citus copies the grant to every shard, on every node, and to the
    shards of tables distributed later). The reader still cannot write anything, nor take the
    run lock, nor read `customers`, the import's tables or the rejected lines (no view reads
    them); it can read those tables beside the views, which a single server does not allow
    (docs/citus.md). No-op on a single server.
    """
    if not distributed(connection):
        return []
    tables = list(connection.exec_driver_sql(
        "select distinct source.relname from pg_depend as dependency"
        " join pg_rewrite as rule on rule.oid = dependency.objid"
        " join pg_class as source on source.oid = dependency.refobjid"
        " where dependency.classid = 'pg_rewrite'::regclass and source.relnamespace = to_regnamespace(%s)"
        " and source.relkind in ('r', 'p') and source.oid <> rule.ev_class order by 1",
        (INTERNAL,),
    ).scalars())
    raw = connection.connection.driver_connection
    raw.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(INTERNAL), sql.Identifier(READER_ROLE)))
    for table in tables:
        raw.execute(sql.SQL("grant select on {} to {}").format(sql.Identifier(INTERNAL, table), sql.Identifier(READER_ROLE)))
    return tables


def foreign_writes_seen(connection: Connection) -> bool:
    """True when writes to customers and orders from outside the job are counted (by the triggers
    of migration 0010): always on a single server, never on Citus."""
    return not distributed(connection)


def distribute_like(connection: Connection, table: str | sql.Composable) -> None:
    """On Citus, make the new, empty per-customer `table` (a run's own table, or a segmentation's
    new partition before it is attached) distributed by customer_id, co-located with customers.
    No-op on a single server."""
    if not distributed(connection):
        return
    name = table if isinstance(table, str) else table.as_string(connection.connection.driver_connection)
    connection.exec_driver_sql(
        "select create_distributed_table(%s, %s, colocate_with => %s)", (name, DISTRIBUTION_COLUMN, ANCHOR)
    )


def create_table_as(connection: Connection, table: sql.Composable, query: sql.Composable, *, unlogged: bool,
                    prepare=None) -> int:
    """`create [unlogged] table TABLE as QUERY`, returning the rows written.

    On a single server: that very statement (PostgreSQL runs it with parallel workers). On Citus,
    a `create table ... as` would gather every row on the coordinator: the table is created
    empty, distributed like customers, and filled by `insert ... select`, which Citus runs on
    the workers when QUERY reads co-located tables joined on customer_id. `prepare(cursor)`
    runs first on the same cursor (session settings).
    """
    kind = sql.SQL("create unlogged table" if unlogged else "create table")
    raw = connection.connection.driver_connection
    on_citus = distributed(connection)
    with raw.cursor() as cursor:
        if prepare is not None:
            prepare(cursor)
        if not on_citus:
            cursor.execute(sql.SQL("{} {} as {}").format(kind, table, query))
            return cursor.rowcount
        cursor.execute(sql.SQL("{} {} as {} with no data").format(kind, table, query))
    distribute_like(connection, table)
    with raw.cursor() as cursor:
        cursor.execute(sql.SQL("insert into {} {}").format(table, query))
        return cursor.rowcount


def alter_table_steps(connection: Connection, changes: list[sql.Composable]) -> list[sql.Composable]:
    """The subcommands of one `alter table`, as the statements to run: all in one on a single
    server (one scan of the table); one each on Citus, which refuses ADD CONSTRAINT beside others."""
    if not distributed(connection):
        return [sql.SQL(", ").join(changes)]
    return list(changes)


def close_stretches(connection: Connection, source: sql.Composable, segmentation_id: int, run_id: int) -> tuple[int, int]:
    """`publish.history._close_stretches` on Citus: the insert of the closed stretches, then the count
    of those who moved and left, each run on the workers (the single-server form, one statement
    whose modifying CTE returns the closed rows, would gather them on the coordinator)."""
    changed = sql.SQL("from {} where previous_segment_id is not null and previous_segment_id is distinct from segment_id"
                      ).format(source)
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(sql.SQL(
            "insert into segmentation_internal.segment_stretches"
            " (segmentation_id, customer_id, segment_id, from_run_id, to_run_id, next_segment_id)"
            " select {segmentation}, customer_id, previous_segment_id, previous_since_run_id, {run}, segment_id {changed}"
        ).format(segmentation=sql.Literal(int(segmentation_id)), run=sql.Literal(int(run_id)), changed=changed))
        cursor.execute(sql.SQL(
            "select count(*) filter (where segment_id is not null), count(*) filter (where segment_id is null) {}"
        ).format(changed))
        moved, left = cursor.fetchone()
    return int(moved), int(left)




def create_stage(connection: Connection, statement: str) -> bool:
    """On Citus, an import's temporary stage: `statement` ("create temporary table NAME (COLUMNS)
    on commit drop") becomes an unlogged table of STAGE_SCHEMA distributed like customers, which
    the rest of the transaction finds by its bare NAME (the schema goes first on its search
    path), so that the merge joins it with customers shard by shard. It outlives the transaction
    until the next import replaces it. False, and nothing done, on a single server."""
    if not distributed(connection):
        return False
    found = re.fullmatch(r"\s*create temporary table (\w+) \((.*)\) on commit drop\s*", statement, re.DOTALL)
    if found is None:
        raise ValueError(f"not a temporary stage table: {statement[:80]}")
    name, columns = found.groups()
    connection.exec_driver_sql(f"drop table if exists {STAGE_SCHEMA}.{name}")  # the job's own constant names
    connection.exec_driver_sql(f"create unlogged table {STAGE_SCHEMA}.{name} ({columns})")
    distribute_like(connection, f"{STAGE_SCHEMA}.{name}")
    connection.exec_driver_sql("select set_config('search_path', %s || ', ' || current_setting('search_path'), true)",
                               (STAGE_SCHEMA,))
    return True


def create_stage_as(connection: Connection, name: str, query: sql.Composable) -> bool:
    """On Citus, a `create temporary table NAME on commit drop as QUERY` (an import's changes, a
    run's changed customers) as a distributed table of STAGE_SCHEMA, found by its bare NAME for the
    rest of the transaction (see `create_stage`). False, and nothing done, on a single server."""
    if not distributed(connection):
        return False
    connection.exec_driver_sql(f"drop table if exists {STAGE_SCHEMA}.{name}")
    create_table_as(connection, sql.Identifier(STAGE_SCHEMA, name), query, unlogged=True)
    connection.exec_driver_sql("select set_config('search_path', %s || ', ' || current_setting('search_path'), true)",
                               (STAGE_SCHEMA,))
    return True


def volatile_allowed(connection: Connection) -> bool:
    """False on Citus, which refuses volatile functions in a distributed `insert ... select`."""
    return not distributed(connection)


def shard_counts(connection: Connection, table: str) -> sa.Result:
    """Rows of `table` per worker (node name:port, rows): how the data splits across the cluster."""
    return connection.execute(sa.text(
        "select nodename || ':' || nodeport as node, sum(result::bigint) as rows"
        " from run_command_on_placements(cast(:table as regclass), 'select count(*) from %s')"
        " group by 1 order by 1"
    ), {"table": table})
