"""Recognising a file that starts with the bytes of the last import, so that only its tail is read.

A nightly export is usually yesterday's file with lines appended. Every succeeded batch
records its file's length and SHA-256 (`import_batches.source_bytes`, `source_sha256`), a
hash of what its lines were read under (`reading_key`), the version of the table it wrote
when it finished (`table_versions`: the job's imports count their writes per segmentation; a
trigger counts every other statement that writes `customers` or `orders`, whoever runs it, under
segmentation 0), whether the table is covered by the file (`covers_table`) and its rejects'
reasons (`reject_patterns`).

A later import of the same kind into the same segmentation may skip the first `source_bytes`
bytes when that batch is the last to have written the segmentation's rows and nothing else has
written the table since (both versions are unchanged), its rejects are all still
stored, it was read under the same key, and the new file starts with the same bytes, which
end in a line end, in a file whose line ends are LF or CRLF. Those lines are then read as
they were: unchanged, the rejected ones rejected again with the same line numbers, raw text
and reasons (copied to the new batch). What the tail may do to them is checked by the
callers (`merge._tail_load`, `orders._tail_load`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation import citus
from segmentation.ingest.source import _BOM, BLOCK_BYTES

log = logging.getLogger(__name__)

#: part of every reading key: raise it when a change to the code reads a line differently
READER_VERSION = 2  # 2: encoding, decimal commas, future order dates, repeated order lines
#: `import_batches.method`-like name of the path that reads only the tail
METHOD = "unchanged prefix"


def reading_key(kind: str, *declaration: object) -> str:
    """A hash of what lines are read under: the kind of import, its declaration (anything
    JSON can hold, in a fixed order) and READER_VERSION."""
    text = json.dumps([kind, READER_VERSION, *declaration], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Previous:
    """The last import of a kind, as far as a file that starts with its bytes needs it."""

    batch_id: int
    source_bytes: int
    source_sha256: str
    rows_read: int
    rows_rejected: int
    covers_table: bool
    reject_patterns: dict[str, int]


@dataclasses.dataclass
class Prefix:
    """A file that starts with `previous`'s bytes: `lines` lines (the header included) and the
    SHA-256 of those bytes so far (`digest`, to go on with the tail's)."""

    previous: Previous
    lines: int
    digest: hashlib._Hash
    tail_bytes: int

    @property
    def reasons(self) -> collections.Counter[str]:
        return collections.Counter(self.previous.reject_patterns)


def _versions(connection: Connection, kind: str, segmentation_id: int) -> tuple[int, int]:
    """The version of the segmentation's rows of the table `kind` and of writes from outside the
    job (segmentation 0), locked until the caller's transaction ends, so that a writer from
    outside cannot change the table unseen in between (its trigger waits for the lock)."""
    connection.execute(
        sa.text("insert into segmentation_internal.table_versions (table_name, segmentation_id)"
                " values (:kind, :id), (:kind, 0) on conflict do nothing"),
        {"kind": kind, "id": int(segmentation_id)},
    )
    rows = dict(connection.execute(
        sa.text("select segmentation_id, version from segmentation_internal.table_versions"
                " where table_name = :kind and segmentation_id in (:id, 0) for update"),
        {"kind": kind, "id": int(segmentation_id)},
    ).all())
    return rows[int(segmentation_id)], rows[0]


def previous_import(connection: Connection, kind: str, key: str, segmentation_id: int) -> Previous | None:
    """The succeeded batch of `kind` ('customers' or 'orders') that wrote the segmentation's rows
    last, when nothing has written them (or the table, from outside the job) since, it was read
    under `key` and its rejects are all stored."""
    version, foreign = _versions(connection, kind, segmentation_id)
    if not citus.foreign_writes_seen(connection):
        log.debug("%s: on Citus writes from outside the job are not counted; reading the whole file", kind)
        return None
    found = connection.execute(
        sa.text(
            """
            select batch.batch_id, batch.source_bytes, batch.source_sha256, batch.rows_read, batch.rows_rejected,
                   batch.covers_table, batch.reject_patterns, batch.reading_key
            from segmentation_internal.import_batches as batch
            where batch.kind = :kind and batch.segmentation_id = :id and batch.status = 'succeeded'
            and batch.table_version = :version and batch.foreign_version = :foreign
            order by batch.batch_id desc
            limit 1
            """
        ),
        {"kind": kind, "version": version, "foreign": foreign, "id": int(segmentation_id)},
    ).one_or_none()
    if found is None:
        log.debug("%s: no import left the table as it is; reading the whole file", kind)
        return None
    if found.reading_key != key or found.source_bytes is None:
        log.info("%s: the last import (batch %d) was read under another declaration or its file ended in an"
                 " open quote; reading the whole file", kind, found.batch_id)
        return None
    stored = connection.execute(
        sa.text("select count(*) from segmentation_internal.import_rejects where batch_id = :batch_id"),
        {"batch_id": found.batch_id},
    ).scalar_one()
    if stored != found.rows_rejected:
        return None
    return Previous(found.batch_id, found.source_bytes, found.source_sha256, found.rows_read, found.rows_rejected,
                    found.covers_table, found.reject_patterns or {})


def match(path: Path, previous: Previous) -> Prefix | None:
    """The Prefix when `path` starts with `previous`'s bytes ending in a line end ("\\n", in a file
    whose first line ends in LF or CRLF), else None. Reads and hashes those bytes (SHA-256).
    A path that is not a file gives None (the import then refuses it with its usual message)."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size < previous.source_bytes or previous.source_bytes == 0:
        return None
    digest = hashlib.sha256()
    lines = 0
    remaining = previous.source_bytes
    last = b""
    with path.open("rb") as handle:
        first = handle.read(min(BLOCK_BYTES, remaining))
        if not _ends_in_line_feed(first):
            return None
        chunk = first
        while chunk:
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            remaining -= len(chunk)
            chunk = handle.read(min(BLOCK_BYTES, remaining)) if remaining else b""
    if remaining or last != b"\n" or digest.hexdigest() != previous.source_sha256:
        return None
    return Prefix(previous, lines, digest, size - previous.source_bytes)


def _ends_in_line_feed(start: bytes) -> bool:
    """Whether the file's first line (in `start`) ends in LF or CRLF, so that its lines are
    the bytes between "\\n" (in a file whose first line ends in CR alone, every CR ends one)."""
    if start.startswith(_BOM):
        start = start[len(_BOM):]
    ends = [index for index in (start.find(b"\n"), start.find(b"\r")) if index >= 0]
    if not ends:
        return False
    end = min(ends)
    return start[end:end + 1] == b"\n" or start[end + 1:end + 2] == b"\n"


def copy_rejects(connection: Connection, previous: Previous, batch_id: int) -> None:
    """The previous batch's rejected lines, rejected again by batch `batch_id`."""
    if previous.rows_rejected:
        connection.execute(
            sa.text(
                "insert into segmentation_internal.import_rejects (batch_id, line_number, raw_line, reason)"
                " select :batch_id, line_number, raw_line, reason from segmentation_internal.import_rejects"
                " where batch_id = :previous"
            ),
            {"batch_id": batch_id, "previous": previous.batch_id},
        )


def record(
    connection: Connection,
    batch_id: int,
    kind: str,
    path: Path,
    segmentation_id: int,
    *,
    key: str,
    reusable: bool,
    covers_table: bool,
    reasons: collections.Counter[str],
) -> None:
    """Store on batch `batch_id` what a later import needs to recognise its file (`reusable`:
    its end can start a longer file; see the module docstring)."""
    connection.execute(
        sa.text(
            """
            update segmentation_internal.import_batches set
                source_bytes = :source_bytes, reading_key = :key, covers_table = :covers_table,
                reject_patterns = cast(:patterns as jsonb),
                table_version = (select version from segmentation_internal.table_versions
                                 where table_name = :kind and segmentation_id = :id),
                foreign_version = (select version from segmentation_internal.table_versions
                                   where table_name = :kind and segmentation_id = 0)
            where batch_id = :batch_id
            """
        ),
        {
            "batch_id": batch_id,
            "kind": kind,
            "id": int(segmentation_id),
            "source_bytes": path.stat().st_size if reusable else None,
            "key": key,
            "covers_table": covers_table,
            "patterns": json.dumps(dict(reasons)),
        },
    )
