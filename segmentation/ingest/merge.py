"""The staged load: every record into a temporary stage, then set operations in PostgreSQL.

Duplicated ids (the later line wins), the rejects, the merge into `customers` (insert new,
update changed, leave unchanged rows untouched) and the deactivation of customers missing
from a full export are each one statement over the stage.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import citus, db
from segmentation.dataset import Dataset
from segmentation.ingest.prefix import METHOD, Prefix, copy_rejects
from segmentation.ingest.records import (
    _copy_statement,
    _csv_quoted,
    _stream,
    _Writer,
    storable,
)
from segmentation.ingest.rules import ELLIPSIS, MAX_QUOTED_CHARACTERS
from segmentation.ingest.source import _numbered_lines, _open, _Source

log = logging.getLogger(__name__)

STAGE_TEMP_BUFFERS = "1GB"  # local buffers of the staging table (memory of the server backend)
MERGE_WORK_MEM = "256MB"
ORDER_SAMPLE_ROWS = 20_000  # rows read (whole pages) to judge whether a table is stored in id order
MAX_OUT_OF_ORDER_SHARE = 0.05  # of a table's sampled rows, whose id is smaller than the one stored before it

# record_number counts the stage's records in file order from 2 (the header is line 1),
# written by `_Writer` (an identity column cost 4.5 s of a 10M-row stage): it is the record's
# line number unless an earlier record spans lines (`_Writer.line_number`); line_number is
# the file line of a rejected record. attributes is the text of the array as PostgreSQL
# prints it (`plain.array_literal`), compared as text with the stored row's: parsing every
# line's array took about half of the server's work on a 10M-line stage, and only changed
# and new lines need it.
STAGE_TABLE = """
create temporary table import_stage (
    record_number bigint not null,
    customer_id text collate "C",
    attributes text,
    line_number bigint,
    raw_line text,
    reason text
) on commit drop
"""


@contextlib.contextmanager
def _step(label: str) -> Iterator[None]:
    """Log how long a step of the load took (debug level)."""
    started = time.monotonic()
    yield
    log.debug("import: %s (%.2f s)", label, time.monotonic() - started)


def _staged_load(
    connection: Connection,
    path: Path,
    batch_id: int,
    dataset: Dataset,
    dataset_id: int,
    column_map: dict[str, str],
    export_mode: str,
    max_reject_share: float,
    segmentation_id: int,
    reading: dict | None = None,
):
    """COPY every line into a staging table (rejects with their reason), then merge by set operations
    into the segmentation's customers. `reading`: the keyword arguments of `source._open` (encoding,
    decimal_separator)."""
    source = _open(path, dataset, column_map, **(reading or {}))
    writer, reasons, unique = _stage(connection, source, dataset)
    rejected = sum(reasons.values())
    valid = writer.rows_read - rejected
    deactivate = export_mode == "full" and not _too_many_rejects(path, rejected, writer.rows_read, max_reject_share)
    counts = _merge(
        connection, batch_id, dataset_id, segmentation_id, deactivate=deactivate, merge_join=unique,
        any_rejects=rejected > 0,
    )
    return {
        **counts,
        "method": "merge",
        "read": writer.rows_read,
        "unchanged": valid - counts["inserted"] - counts["updated"],
        "rejected": rejected,
        "deactivation_skipped": export_mode == "full" and not deactivate,
        "covers_table": deactivate,
        "open_at_end": writer.open_at_end,
    }, source, reasons


def _too_many_rejects(path: Path, rejected: int, read: int, max_reject_share: float) -> bool:
    """Whether more than `max_reject_share` of the lines were rejected (then a full export marks nobody inactive)."""
    if rejected <= max_reject_share * read:
        return False
    log.warning(
        "%s: %d of %d lines (%.1f%%) were rejected, more than max_reject_share (%.1f%%): this full export"
        " marks nobody inactive; fix the file and import it again",
        path, rejected, read, 100 * rejected / read, 100 * max_reject_share,
    )
    return True


def prepare_session(connection: Connection) -> None:
    """Settings of the transaction for a stage of millions of rows."""
    # Local buffers for the staging table (only settable before a session's first temporary
    # table, hence the savepoint); the default 8 MB makes a million-row stage spill to disk.
    with contextlib.suppress(sa.exc.DBAPIError), connection.begin_nested():
        connection.exec_driver_sql(f"set local temp_buffers = '{STAGE_TEMP_BUFFERS}'")
    # Hash joins and the duplicate check over millions of staged rows spill to disk at the
    # default 4 MB; this transaction is the only heavy one while the run lock is held.
    connection.exec_driver_sql(f"set local work_mem = '{MERGE_WORK_MEM}'")


def _stage(connection: Connection, source: _Source, dataset: Dataset) -> tuple[_Writer, collections.Counter[str], bool]:
    """COPY every record of `source` into `import_stage`; reject the records whose id a later record repeats.

    Returns the writer, the reject patterns counted (superseded records included) and whether
    the stage has a unique index on the valid records' ids.
    """
    prepare_session(connection)
    if not citus.create_stage(connection, STAGE_TABLE):
        connection.exec_driver_sql(STAGE_TABLE)

    def reject(number: int, customer_id: str | None, line: str, reason: str) -> str:
        known = "" if customer_id is None else _csv_quoted(customer_id)
        return f"{known},,{number},{_csv_quoted(line)},{_csv_quoted(reason)}\n"

    writer = _Writer(source.layout, dataset, ",,,", reject, numbered=True)
    statement = _copy_statement(
        "import_stage", ("record_number", "customer_id", "attributes", "line_number", "raw_line", "reason")
    )
    with _step("copy into the stage"):
        _stream(connection, source, statement, writer, expect="read")
    with _step("duplicate ids"):
        n_superseded, unique = _reject_superseded(connection, source.path, writer)
    reasons = writer.reasons.copy()
    if n_superseded:
        reasons[f"customer id {ELLIPSIS} appears again on line {ELLIPSIS}, which replaces this line"] += n_superseded
    return writer, reasons, unique


#: a tail of at most this share of the stored customers is matched by lookups in their primary key
MAX_PROBED_SHARE = 0.05


def _few_against(connection: Connection, tail_records: int, segmentation_id: int) -> bool:
    """Whether `tail_records` are few enough against the stored customers (MAX_PROBED_SHARE) to look
    each up in the primary key: the planner, costing each lookup as a read from disk, hashes all
    10M customers for a tail of 100,000 instead (2-3 s per join here, where the key is in memory)."""
    stored = connection.execute(
        sa.text("select reltuples from pg_class where oid = cast(:table as regclass)"),
        {"table": db.partition("customers", segmentation_id)},
    ).scalar_one()
    return tail_records <= MAX_PROBED_SHARE * stored


class TailConflict(Exception):
    """A line of the tail may change what a line of the prefix did: only the whole file can say."""


def _tail_load(connection: Connection, source: _Source, prefix: Prefix, batch_id: int, dataset: Dataset,
               dataset_id: int, export_mode: str, max_reject_share: float, segmentation_id: int):
    """Merge only the tail of a file whose prefix is the last import's file (`prefix`).

    The prefix's lines are unchanged (its customers are stored as it left them) and its
    rejects are rejected again. Raises TailConflict when a valid tail line names an active
    customer (it may replace a line of the prefix, or, in an incremental import, update a
    customer the prefix does not name): the caller then rolls back and merges the whole
    file. A full export deactivates nobody here: the caller takes this path for a full
    export only when every active customer has a line in the prefix.
    """
    counts = {"inserted": 0, "updated": 0, "deactivated": 0}
    reasons = prefix.reasons
    tail_read = tail_rejected = 0
    open_at_end = False
    if prefix.tail_bytes:
        writer, tail_reasons, _ = _stage(connection, source, dataset)
        with _step("tail lines of active customers"):
            connection.exec_driver_sql("analyze import_stage")
            probes = _few_against(connection, writer.rows_read, segmentation_id)
            if probes:  # look the tail's ids up in the primary key instead of hashing every customer
                connection.exec_driver_sql("set local enable_hashjoin = off")
                connection.exec_driver_sql("set local enable_mergejoin = off")
            if connection.exec_driver_sql(
                f"""
                select exists (
                    select 1 from import_stage as stage
                    join {db.partition("customers", segmentation_id)} as current on current.customer_id = stage.customer_id
                    where stage.reason is null and current.is_active
                )
                """
            ).scalar_one():
                raise TailConflict
        tail_read, tail_rejected = writer.rows_read, sum(tail_reasons.values())
        open_at_end = writer.open_at_end
        reasons += tail_reasons
        counts = _merge(connection, batch_id, dataset_id, segmentation_id, deactivate=False, merge_join=False,
                        any_rejects=tail_rejected > 0, few=bool(probes))
        if probes:
            connection.exec_driver_sql("set local enable_hashjoin to default")
            connection.exec_driver_sql("set local enable_mergejoin to default")
    else:
        source.progress.close()
    copy_rejects(connection, prefix.previous, batch_id)
    read = prefix.previous.rows_read + tail_read
    rejected = prefix.previous.rows_rejected + tail_rejected
    skipped = export_mode == "full" and _too_many_rejects(source.path, rejected, read, max_reject_share)
    return {
        **counts,
        "method": METHOD,
        "read": read,
        "unchanged": read - rejected - counts["inserted"] - counts["updated"],
        "rejected": rejected,
        "deactivation_skipped": skipped,
        "covers_table": prefix.previous.covers_table,
        "open_at_end": open_at_end,
    }, source, reasons


def _reject_superseded(connection: Connection, path: Path, writer: _Writer) -> tuple[int, bool]:
    """The same id twice in a file: the later valid record wins, earlier ones are rejected.

    Returns (records rejected as superseded, whether the stage has a unique index on the id).
    """
    # Building a unique index is the cheapest duplicate test on millions of rows (one sort;
    # a GROUP BY took 11 s on 10M): if it builds, no id repeats and the window query is skipped.
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(f"set local maintenance_work_mem = '{MERGE_WORK_MEM}'")
            connection.exec_driver_sql(
                "create unique index import_stage_unique_id on import_stage (customer_id) where reason is null"
            )
        return 0, True
    except sa.exc.IntegrityError:
        pass  # some id repeats: find which records lost
    superseded = connection.execute(
        sa.text(
            """
            with valid as (
                select record_number, customer_id,
                       max(record_number) over (partition by customer_id) as winner
                from import_stage
                where reason is null
            )
            select record_number, winner, customer_id from valid where record_number <> winner order by record_number
            """
        )
    ).all()
    if not superseded:
        return 0, False
    # Re-read only those records' lines from the file (duplicates are rare) to keep them verbatim.
    wanted: dict[int, int] = {}  # file line -> number of the record it belongs to
    for record_number, _, _ in superseded:
        first = writer.line_number(record_number)
        for offset in range(writer.lines_of(record_number)):
            wanted[first + offset] = record_number
    lines: dict[int, list[str]] = collections.defaultdict(list)
    found = 0
    for number, text in _numbered_lines(path, hashlib.sha256(), lambda *_: None, writer.layout.encoding):
        if number in wanted:
            lines[wanted[number]].append(text)
            found += 1
            if found == len(wanted):
                break
    connection.execute(
        sa.text(
            """
            update import_stage as stage
            set line_number = loser.line_number, raw_line = loser.raw_line, reason = loser.reason
            from unnest(cast(:records as bigint[]), cast(:line_numbers as bigint[]), cast(:raw_lines as text[]),
                        cast(:reasons as text[]))
                as loser (record_number, line_number, raw_line, reason)
            where stage.record_number = loser.record_number
            """
        ),
        {
            "records": [record_number for record_number, _, _ in superseded],
            "line_numbers": [writer.line_number(record_number) for record_number, _, _ in superseded],
            "raw_lines": [storable("\n".join(lines[record_number])) for record_number, _, _ in superseded],
            "reasons": [
                f"customer id {_shown(customer_id)} appears again on line {writer.line_number(winner)},"
                " which replaces this line"
                for _, winner, customer_id in superseded
            ],
        },
    )
    return len(superseded), False


def _shown(customer_id: str) -> str:
    """A customer id as a reason shows it: its first 40 characters, and how many more there are."""
    if len(customer_id) <= MAX_QUOTED_CHARACTERS:
        return customer_id
    return f"{customer_id[:MAX_QUOTED_CHARACTERS]}... ({len(customer_id) - MAX_QUOTED_CHARACTERS} more characters)"


def _both_in_id_order(connection: Connection, customers: str) -> bool:
    """Whether the stage and `customers` are both stored in (or close to) id order.

    Judged on a sample of whole pages (about ORDER_SAMPLE_ROWS rows) in the order they are stored: the share of rows
    whose id is smaller than the one before. Ids of a file in number order stored as text
    ("9" before "10") break that order only where the number of digits grows; lines in random
    order break it every other row. pg_stats' correlation could not tell these apart (0.82 at
    1M such ids, -0.12 at 3M).
    """
    if citus.distributed(connection):  # the sample's window would gather each table on the coordinator
        return False
    connection.exec_driver_sql(f"analyze {customers}")
    for table in ("import_stage", customers):
        rows = connection.execute(
            sa.text("select reltuples from pg_class where oid = cast(:table as regclass)"), {"table": table}
        ).scalar_one()
        percent = min(100.0, max(0.01, 100.0 * ORDER_SAMPLE_ROWS / max(rows, 1.0)))
        sampled, descents = connection.execute(
            sa.text(
                f"""
                select count(*), count(*) filter (where customer_id < previous)
                from (select customer_id, lag(customer_id) over () as previous
                      from {table} tablesample system ({percent:.4f}) repeatable (0)) as stored
                """
            )
        ).one()
        if sampled and descents > MAX_OUT_OF_ORDER_SHARE * sampled:
            return False
    return True


def _merge(
    connection: Connection, batch_id: int, dataset_id: int, segmentation_id: int, *, deactivate: bool,
    merge_join: bool, any_rejects: bool, few: bool = False,
) -> dict[str, int]:
    """Store the stage's rejects, update the segmentation's changed customers, insert new ones,
    deactivate missing ones.

    A customer changed when its attributes, its declaration (dataset_id) or is_active differ;
    attributes are compared as the text PostgreSQL prints for the stored array, which the stage
    holds in the same spelling (one spelling per content: equal text, equal arrays), so only
    changed and new lines have their array parsed.
    One join of the stage with `customers` finds what changed or is new (into a small table
    when little changed), so the two big tables are matched once. When both tables are stored
    in (or close to) id order and the stage has its unique id index, a merge join of the two
    id indexes does that about twice as fast as the hash join the planner would choose; in
    random order the merge join reads pages at random and the planner's choice stands.

    With `deactivate` (a full export), active customers with no line in the file become
    inactive; a line that was rejected but whose id could be read keeps its customer active.
    With `few` (the changed lines of a full export), the stage's customers are looked up in the
    primary key instead (`db.index_lookups`). When the import wrote more than a tenth of the
    customers, their statistics are gathered again for the nights that follow.
    """
    if any_rejects:  # else skip a scan of the whole stage
        with _step("rejects"):
            connection.exec_driver_sql(  # the batch id spelled out: Citus plans no bound parameter in a select list here
                "insert into segmentation_internal.import_rejects (batch_id, line_number, raw_line, reason)"
                f" select cast({int(batch_id)} as bigint), line_number, raw_line, reason from import_stage"
                " where reason is not null"
            )
    customers = db.partition("customers", segmentation_id)
    with _step("analyze"):
        connection.exec_driver_sql("analyze import_stage")
        merge_join = merge_join and _both_in_id_order(connection, customers)
    log.debug("matching the stage with customers by %s", "a merge join of the id indexes" if merge_join else "the planner's choice")
    # Only the stage's valid records take part in the join, so that its partial unique index
    # gives them in id order (with every record the planner sorted 10M rows on disk: 19 s).
    # With `deactivate`, a full join finds the customers with no valid line in the file in
    # the same pass; a customer whose line was rejected but whose id could be read stays
    # active (those ids are few: with more than max_reject_share rejected, nobody is
    # deactivated).
    join, gone = sql.SQL("left join"), sql.SQL("")
    if deactivate:
        kept = sql.SQL(
            "and current.customer_id not in"
            " (select customer_id from import_stage where reason is not null and customer_id is not null)"
        ) if any_rejects else sql.SQL("")
        join = sql.SQL("full join")
        gone = sql.SQL("or (stage.customer_id is null and current.is_active {kept})").format(kept=kept)
    match = sql.SQL("current.customer_id = stage.customer_id")
    if few and not deactivate:
        match = sql.SQL("current.segmentation_id = {} and {}").format(sql.Literal(int(segmentation_id)), match)
    with _step("changed, new and missing customers"):
        if few:
            db.index_lookups(connection.connection.driver_connection)
        if merge_join:
            connection.exec_driver_sql("set local enable_hashjoin = off")
            connection.exec_driver_sql("set local enable_nestloop = off")
        select = sql.SQL(
            """
            select coalesce(stage.customer_id, current.customer_id) as customer_id,
                   cast(stage.attributes as text[]) as attributes,
                   current.customer_id is null as is_new, stage.customer_id is null as is_gone
            from (select customer_id, attributes from import_stage where reason is null) as stage
            {join} {customers} as current on {match}
            where (stage.customer_id is not null
                   and (current.customer_id is null
                        or (cast(current.attributes as text), current.dataset_id, current.is_active)
                           is distinct from (stage.attributes, {dataset_id}, true)))
            {gone}
            """
        ).format(join=join, gone=gone, dataset_id=sql.Literal(dataset_id), customers=sql.SQL(customers), match=match)
        if not citus.create_stage_as(connection, "import_changes", select):
            statement = sql.SQL("create temporary table import_changes on commit drop as {}").format(select)
            connection.exec_driver_sql(statement.as_string(connection.connection.driver_connection))
        if merge_join:
            connection.exec_driver_sql("set local enable_hashjoin to default")
            connection.exec_driver_sql("set local enable_nestloop to default")
        connection.exec_driver_sql("analyze import_changes")
    with _step("update, insert, deactivate"):
        updated = connection.execute(
            sa.text(
                f"""
                update {customers} as current
                set attributes = changed.attributes,
                    dataset_id = :dataset_id,
                    is_active = true,
                    last_batch_id = :batch_id,
                    updated_at = now()
                from import_changes as changed
                where not changed.is_new and not changed.is_gone
                  and current.segmentation_id = :segmentation and changed.customer_id = current.customer_id
                """
            ),
            {"batch_id": batch_id, "dataset_id": dataset_id, "segmentation": segmentation_id},
        ).rowcount
        inserted = connection.execute(
            sa.text(
                f"""
                insert into {customers} (customer_id, attributes, dataset_id, first_batch_id, last_batch_id)
                select customer_id, attributes, :dataset_id, :batch_id, :batch_id
                from import_changes
                where is_new
                """
            ),
            {"batch_id": batch_id, "dataset_id": dataset_id},
        ).rowcount
        deactivated = 0
        if deactivate:
            deactivated = connection.execute(
                sa.text(
                    f"""
                    update {customers} as current
                    set is_active = false, last_batch_id = :batch_id, updated_at = now()
                    from import_changes as changed
                    where changed.is_gone
                      and current.segmentation_id = :segmentation and changed.customer_id = current.customer_id
                    """
                ),
                {"batch_id": batch_id, "segmentation": segmentation_id},
            ).rowcount
    if few:
        db.planner_defaults(connection.connection.driver_connection)
    written = inserted + updated + deactivated
    counted = connection.execute(sa.text("select reltuples from pg_class where oid = cast(:table as regclass)"),
                                 {"table": customers}).scalar_one()
    if written and (counted < 0 or written > 0.1 * counted):  # never analyzed (-1), or a tenth rewritten
        with _step("analyze customers"):
            connection.exec_driver_sql(f"analyze {customers}")
    return {"inserted": inserted, "updated": updated, "deactivated": deactivated}
