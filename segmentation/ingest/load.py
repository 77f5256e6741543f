"""Loading one file into `segmentation_internal.customers`: the batch row, the first load, the result.

`import_file` records the batch (running, then succeeded or failed) around `load_file`,
which runs inside the caller's transaction: into an empty `customers` table valid records
are copied straight in (`_first_load`); a file that starts with the last import's file has
only its tail staged and merged (`merge._tail_load`, see `prefix`); otherwise, or when an id
repeats in the file, the file goes through the staging table (`merge._staged_load`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from segmentation import db
from segmentation.dataset import MALL, Dataset
from segmentation.errors import ImportRefused, describe
from segmentation.ingest import diff
from segmentation.ingest.changed import ChangedLinesFallBack, changed_load
from segmentation.ingest.filetype import check_readable
from segmentation.ingest.merge import (
    TailConflict,
    _staged_load,
    _tail_load,
    prepare_session,
)
from segmentation.ingest.prefix import match, previous_import, reading_key, record
from segmentation.ingest.records import (
    _copy_statement,
    _csv_quoted,
    _stream,
    _Writer,
    storable,
)
from segmentation.ingest.source import BLOCK_BYTES, _open
from segmentation.settings import Settings

log = logging.getLogger(__name__)

#: memory of the server backend for building the primary key of a first load (10M ids: ~400 MB to sort in memory)
INDEX_BUILD_MEMORY = "512MB"
MAX_ERROR_CHARACTERS = 2000  # of a failure stored on the batch row (our own messages are shorter)


@dataclasses.dataclass
class ImportResult:
    """What one import did, as stored in `import_batches`, plus what the pipeline needs to judge it."""

    batch_id: int
    source_name: str
    status: str
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    rows_deactivated: int = 0
    seconds: float = 0.0
    #: "first load" (COPY straight into an empty customers table), "merge" (staging table) or
    #: "unchanged prefix" (the file starts with the last import's file: only the rest is staged)
    method: str = "merge"
    #: segmentation_internal.datasets row of the declaration the file was read under
    dataset_id: int | None = None
    #: rows_rejected / rows_read
    reject_share: float = 0.0
    #: the three most common reasons (values replaced by '…') with their counts, most common first
    top_reasons: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: header names that are neither the id nor a declared column
    ignored_columns: tuple[str, ...] = ()
    #: a full export rejected more than max_reject_share: nobody was marked inactive
    deactivation_skipped: bool = False
    #: SHA-256 of the file (hex)
    sha256: str | None = None

    def summary(self) -> str:
        text = (
            f"batch {self.batch_id}: {self.rows_read} lines read, {self.rows_inserted} inserted,"
            f" {self.rows_updated} updated, {self.rows_unchanged} unchanged,"
            f" {self.rows_rejected} rejected, {self.rows_deactivated} deactivated"
            f" ({self.seconds:.2f} s, {self.method})"
        )
        if self.rows_inserted + self.rows_updated + self.rows_deactivated == 0:
            text += "; nothing changed"
        if self.deactivation_skipped:
            text += f"; nobody marked inactive: {self.reject_share:.1%} of the lines were rejected"
        return text


def ensure_dataset(connection: Connection, dataset: Dataset) -> int:
    """The `segmentation_internal.datasets` id of `dataset` (by its fingerprint), inserting it when new."""
    fingerprint = dataset.fingerprint()
    found = connection.execute(
        sa.text("select dataset_id from segmentation_internal.datasets where fingerprint = :fingerprint"),
        {"fingerprint": fingerprint},
    ).scalar()
    if found is not None:
        return found
    connection.execute(
        sa.text(
            "insert into segmentation_internal.datasets (fingerprint, declaration) values (:fingerprint, cast(:declaration as jsonb))"
            " on conflict (fingerprint) do nothing"
        ),
        {"fingerprint": fingerprint, "declaration": json.dumps(dataset.describe())},
    )
    return connection.execute(
        sa.text("select dataset_id from segmentation_internal.datasets where fingerprint = :fingerprint"),
        {"fingerprint": fingerprint},
    ).scalar_one()


def begin_batch(connection: Connection, source_name: str, export_mode: str, segmentation_id: int,
                kind: str = "customers") -> int:
    """Insert a `running` batch row of the segmentation and return its id (commit it before the data transaction)."""
    return connection.execute(
        sa.text(
            "insert into segmentation_internal.import_batches (source_name, export_mode, segmentation_id, kind)"
            " values (:source_name, :export_mode, :segmentation_id, :kind) returning batch_id"
        ),
        {"source_name": source_name, "export_mode": export_mode, "segmentation_id": segmentation_id, "kind": kind},
    ).scalar_one()


def fail_batch(connection: Connection, batch_id: int, message: str) -> None:
    """Mark the batch failed with `message` (its first 2,000 characters, storable as text)."""
    if len(message) > MAX_ERROR_CHARACTERS:
        message = f"{message[:MAX_ERROR_CHARACTERS]}... ({len(message) - MAX_ERROR_CHARACTERS} more characters)"
    message = storable(message)
    connection.execute(
        sa.text(
            "update segmentation_internal.import_batches set status = 'failed', finished_at = statement_timestamp(),"
            " error = :error where batch_id = :batch_id"
        ),
        {"batch_id": batch_id, "error": message},
    )


def kept_file(engine: Engine, settings: Settings, segmentation_id: int) -> diff.Kept:
    """Where the segmentation's last imported customer file is kept for the next import to compare with."""
    return diff.Kept(settings.data_dir / "imports" / db.database_folder_name(engine.url) / f"segmentation-{segmentation_id}")


def import_file(engine: Engine, path: Path, settings: Settings, segmentation_id: int) -> ImportResult:
    """Import one CSV into the segmentation's customers under `settings.declaration`: all its rows
    or none, the batch row recording the outcome. A copy of the file is kept afterwards, so that the
    next import can read only the lines that changed (`diff`)."""
    check_readable(path)
    kept = kept_file(engine, settings, segmentation_id)
    try:
        before = path.stat()
    except OSError:
        before = None
    with engine.begin() as connection:
        batch_id = begin_batch(connection, path.name, settings.export_mode, segmentation_id)
    try:
        with engine.begin() as connection:
            result = load_file(
                connection,
                path,
                batch_id,
                segmentation_id=segmentation_id,
                kept=kept,
                dataset=settings.declaration,
                column_map=settings.column_map,
                export_mode=settings.export_mode,
                max_reject_share=settings.max_reject_share,
                encoding=settings.encoding,
                decimal_separator=settings.decimal_separator,
            )
    except BaseException as error:
        message = describe(error)
        try:
            with engine.begin() as connection:
                fail_batch(connection, batch_id, db.redact(" ".join(message.split())))
        except Exception:  # the server is gone: the next run marks the batch abandoned
            log.warning("import batch %d: could not record its failure", batch_id)
        raise
    after = path.stat()
    if before is not None and (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
        kept.keep(path, batch_id, result.sha256)
    else:  # the file changed while it was read: the copy could not be trusted
        kept.forget()
    return result


class _DuplicateInFile(Exception):
    """A customer id repeats in the file: the first-load COPY cannot decide which line wins."""


def load_file(
    connection: Connection,
    path: Path,
    batch_id: int,
    *,
    segmentation_id: int,
    kept: diff.Kept | None = None,
    dataset: Dataset | None = None,
    column_map: dict[str, str] | None = None,
    export_mode: str = "full",
    max_reject_share: float = 0.05,
    encoding: str = "utf-8",
    decimal_separator: str = "auto",
) -> ImportResult:
    """Stream `path`, read under `dataset` (default: the mall's), into the segmentation's partition of
    `customers` inside the caller's transaction.

    Into a segmentation without customers the valid lines are copied straight in ("first load");
    when the file starts with the file of the last import that wrote `customers`, read under
    the same declaration, only the lines after it are staged and merged ("unchanged prefix",
    see `segmentation.ingest.prefix`; the whole file is merged instead when a line after it
    names an active customer); otherwise, or when an id repeats in the file, they go through a
    staging table and a set-based merge ("merge"). The file is decoded in `encoding`; its numbers
    mark decimals as `decimal_separator` says. In a full export customers missing from the file become
    inactive, unless more than `max_reject_share` of the lines were rejected (then nobody
    is). Raises ImportRefused (and loads nothing, once the caller rolls back) for a missing
    or unreadable file, an empty file, a file that is not CSV text, a bad or too long header
    or invalid UTF-8.
    """
    started = time.monotonic()
    if not path.is_file():  # before any attempt to recognise it as the last file, changed or grown
        raise ImportRefused(f"{path}: no such file")
    dataset = dataset or MALL
    column_map = column_map or {}
    dataset_id = ensure_dataset(connection, dataset)
    db.importing(connection)
    # everything that decides how a line is read (the fingerprint leaves out headers and ranges)
    reading = {"encoding": encoding, "decimal_separator": decimal_separator}
    key = reading_key("customers", dataset.id_column, dataset.id_type, dataset.id_aliases,
                      [dataclasses.asdict(column) for column in dataset.columns], sorted(column_map.items()), reading)
    counts = None
    table = db.partition("customers", segmentation_id)
    empty = not db.partition_exists(connection, "customers", segmentation_id) or connection.execute(
        sa.text(f"select not exists (select 1 from {table} limit 1)")  # limit: on Citus each shard stops at one row
    ).scalar_one()
    if not empty:
        counts, source, reasons = _prefix_load(
            connection, path, batch_id, dataset, dataset_id, column_map, export_mode, max_reject_share, key,
            segmentation_id, reading,
        )
    if not empty and counts is None and kept is not None:
        counts, source, reasons = _changed_load(
            connection, path, kept, batch_id, dataset, dataset_id, column_map, export_mode, max_reject_share, key,
            segmentation_id, reading,
        )
    if empty:
        try:
            with connection.begin_nested():
                counts, source, reasons = _first_load(
                    connection, path, batch_id, dataset, dataset_id, column_map, segmentation_id, reading
                )
        except _DuplicateInFile:
            log.info("%s: a customer id repeats in the file; loading through the staging table", path)
    if counts is None:
        db.ensure_partition(connection, "customers", segmentation_id)
        counts, source, reasons = _staged_load(
            connection, path, batch_id, dataset, dataset_id, column_map, export_mode, max_reject_share, segmentation_id,
            reading,
        )
    result = ImportResult(
        batch_id=batch_id,
        source_name=path.name,
        status="succeeded",
        rows_read=counts["read"],
        rows_inserted=counts["inserted"],
        rows_updated=counts["updated"],
        rows_unchanged=counts["unchanged"],
        rows_rejected=counts["rejected"],
        rows_deactivated=counts["deactivated"],
        seconds=time.monotonic() - started,
        method=counts["method"],
        dataset_id=dataset_id,
        reject_share=counts["rejected"] / counts["read"] if counts["read"] else 0.0,
        top_reasons=sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:3],
        ignored_columns=source.layout.ignored,
        deactivation_skipped=counts.get("deactivation_skipped", False),
        sha256=source.digest.hexdigest(),
    )
    # a bug, never bad input: refuse rather than lose lines
    accounted = result.rows_inserted + result.rows_updated + result.rows_unchanged + result.rows_rejected
    if accounted != result.rows_read:
        raise RuntimeError(f"{path}: {result.rows_read} lines read but {accounted} accounted for")
    if sum(reasons.values()) != result.rows_rejected:
        raise RuntimeError(f"{path}: {result.rows_rejected} lines rejected but {sum(reasons.values())} reasons counted")
    db.count_import(connection, "customers", segmentation_id)
    record(connection, batch_id, "customers", path, segmentation_id, key=key, reusable=not counts["open_at_end"],
           covers_table=empty or counts["covers_table"], reasons=reasons)
    connection.execute(
        sa.text(
            """
            update segmentation_internal.import_batches set
                status = 'succeeded', finished_at = statement_timestamp(), source_sha256 = :sha256,
                rows_read = :rows_read, rows_inserted = :rows_inserted, rows_updated = :rows_updated,
                rows_unchanged = :rows_unchanged, rows_rejected = :rows_rejected,
                rows_deactivated = :rows_deactivated
            where batch_id = :batch_id
            """
        ),
        {
            "sha256": source.digest.hexdigest(),
            "batch_id": batch_id,
            **{field: getattr(result, field) for field in (
                "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected", "rows_deactivated"
            )},
        },
    )
    return result


def _prefix_load(connection: Connection, path: Path, batch_id: int, dataset: Dataset, dataset_id: int,
                 column_map: dict[str, str], export_mode: str, max_reject_share: float, key: str,
                 segmentation_id: int, reading: dict):
    """(counts, source, reasons) of reading only the tail of a file that starts with the last import's
    file (`prefix`), or (None, None, None) when it does not or the tail may change what the prefix did."""
    previous = previous_import(connection, "customers", key, segmentation_id)
    # a full export deactivates customers it does not name: the prefix must name every active one
    if previous is None or (export_mode == "full" and not previous.covers_table):
        return None, None, None
    prefix = match(path, previous)
    if prefix is None:
        log.info("%s: does not start with the file of batch %d", path, previous.batch_id)
        return None, None, None
    prepare_session(connection)
    source = _open(path, dataset, column_map, **reading).tail(previous.source_bytes, prefix.lines + 1, prefix.digest)
    try:
        with connection.begin_nested():
            return _tail_load(connection, source, prefix, batch_id, dataset, dataset_id, export_mode, max_reject_share,
                              segmentation_id)
    except TailConflict:
        log.info("%s: a line after the file of batch %d names an active customer; reading the whole file",
                 path, previous.batch_id)
        return None, None, None


def _changed_load(connection: Connection, path: Path, kept: diff.Kept, batch_id: int, dataset: Dataset,
                  dataset_id: int, column_map: dict[str, str], export_mode: str, max_reject_share: float, key: str,
                  segmentation_id: int, reading: dict):
    """(counts, source, reasons) of reading only the lines that differ from the last import's file,
    kept beside the data (`diff`, `changed`), or (None, None, None) when that file is not kept or
    only the whole file can say what changed."""
    previous = previous_import(connection, "customers", key, segmentation_id)
    # a full export deactivates customers it does not name: the last file must have named every active one
    if previous is None or (export_mode == "full" and not previous.covers_table):
        return None, None, None
    copy = kept.matching(previous.batch_id, previous.source_sha256)
    if copy is None:
        return None, None, None
    prepare_session(connection)
    try:
        with connection.begin_nested():
            found = changed_load(connection, path, copy, previous, batch_id, dataset, dataset_id, column_map,
                                 export_mode, max_reject_share, segmentation_id, reading)
    except ChangedLinesFallBack:
        log.info("%s: the changed lines alone cannot say what the file does; reading the whole file", path)
        return None, None, None
    if found is None:
        log.info("%s: too different from the file of batch %d to read only its changed lines; reading the whole"
                 " file", path, previous.batch_id)
        return None, None, None
    return found


def _first_load(
    connection: Connection, path: Path, batch_id: int, dataset: Dataset, dataset_id: int, column_map: dict[str, str],
    segmentation_id: int, reading: dict,
):
    """COPY valid lines straight into a new partition of `customers` for the segmentation (an empty
    one is replaced), then key and attach it; rejects go to a spool file first.
    `reading`: the keyword arguments of `source._open` (encoding, decimal_separator)."""
    source = _open(path, dataset, column_map, **reading)
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        n_rejected = 0

        def reject(number: int, customer_id: str | None, line: str, reason: str) -> None:
            nonlocal n_rejected
            n_rejected += 1
            spool.write(f"{batch_id},{number},{_csv_quoted(line)},{_csv_quoted(reason)}\n")

        writer = _Writer(source.layout, dataset, f",{batch_id},{batch_id},{dataset_id}", reject)
        # Keeping the primary key up to date row by row doubled the time of a 10M-row load; one
        # sorted build afterwards is cheaper: the rows go into a table of their own, keyed and
        # attached as the segmentation's partition once loaded (all undone with the caller's
        # savepoint if anything fails).
        if db.partition_exists(connection, "customers", segmentation_id):
            connection.exec_driver_sql(f"drop table {db.partition('customers', segmentation_id)}")
        table = db.create_standalone(connection, "customers", segmentation_id, keys=False)
        statement = _copy_statement(table, ("customer_id", "attributes", "first_batch_id", "last_batch_id", "dataset_id"))
        _stream(connection, source, statement, writer, expect="valid")
        connection.exec_driver_sql(f"set local maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        try:
            connection.exec_driver_sql(f"alter table {table} add primary key (segmentation_id, customer_id)")
        except sa.exc.IntegrityError:
            raise _DuplicateInFile from None
        db.attach_partition(connection, "customers", segmentation_id)
        if n_rejected:
            spool.seek(0)
            raw_connection = connection.connection.driver_connection
            with raw_connection.cursor() as cursor, cursor.copy(
                "copy segmentation_internal.import_rejects (batch_id, line_number, raw_line, reason) from stdin"
                " with (format csv)"
            ) as copy:
                while block := spool.read(BLOCK_BYTES):
                    copy.write(block)
    return {
        "method": "first load",
        "read": writer.rows_read,
        "inserted": writer.rows_valid,
        "updated": 0,
        "unchanged": 0,
        "rejected": n_rejected,
        "deactivated": 0,
        "covers_table": True,
        "open_at_end": writer.open_at_end,
    }, source, writer.reasons

