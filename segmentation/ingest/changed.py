"""Importing only the lines of a full export that changed since the last import (`diff`).

The changed lines are read, checked and staged exactly as the staged merge reads a whole file,
with their own line numbers, then merged; the customers whose line of the last file is gone
(and who have no line in the new file) are marked inactive. Lines rejected last time are read
again, so that this batch records its rejects with this file's line numbers.

Whenever the changed lines alone cannot say what the whole file would do, `ChangedLinesFallBack`
is raised and the caller merges the whole file: a customer id appearing twice among the changed
lines, or a changed line naming an active customer whose line of the last file is still there
(the same id twice in the new file).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segmentation import db
from segmentation.dataset import Dataset
from segmentation.ingest import diff
from segmentation.ingest.merge import _merge, _stage, _step, _too_many_rejects
from segmentation.ingest.prefix import Previous
from segmentation.ingest.rules import line_customer_id
from segmentation.ingest.source import Block, _open

log = logging.getLogger(__name__)

METHOD = "changed lines"


class ChangedLinesFallBack(Exception):
    """The changed lines cannot decide the import alone: merge the whole file."""


def _blocks(indices: np.ndarray, texts: list[bytes], encoding: str) -> list[Block]:
    """The data lines `indices` (0-based, increasing) with their bytes `texts`, as Blocks of
    consecutive lines numbered as in the file, decoded as the whole file's reader decodes them
    (bytes not valid in `encoding` as lone surrogates)."""
    blocks = []
    if not len(indices):
        return blocks
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    for first, stop in zip(np.concatenate([[0], breaks]).tolist(), np.concatenate([breaks, [len(indices)]]).tolist()):
        text = b"".join(texts[first:stop]).decode(encoding, "surrogateescape").replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        blocks.append(Block(int(indices[first]) + 2, text))
    return blocks


def _ids(texts: list[bytes], layout, dataset: Dataset, encoding: str) -> list[str]:
    """The customer ids (stored form) of the data lines `texts` (lines the last import accepted),
    where they can be read: only the id's field is parsed."""
    ids = []
    for line in texts:
        customer_id = line_customer_id(line.decode(encoding, "surrogateescape").rstrip("\r\n"), layout, dataset)
        if customer_id is not None:
            ids.append(customer_id)
    return ids


def changed_load(
    connection: Connection, path: Path, kept: Path, previous: Previous, batch_id: int, dataset: Dataset,
    dataset_id: int, column_map: dict[str, str], export_mode: str, max_reject_share: float, segmentation_id: int,
    reading: dict,
):
    """(counts, source, reasons) of importing only the lines of `path` that differ from `kept` (the
    file of `previous`), or None when the files cannot be compared line by line. Raises
    ChangedLinesFallBack (the caller rolls back to its savepoint) when only the whole file can say."""
    rejected_before = np.array(connection.execute(
        sa.text("select line_number - 2 from segmentation_internal.import_rejects where batch_id = :batch_id"),
        {"batch_id": previous.batch_id},
    ).scalars().all(), dtype=np.int64)
    with _step("compare with the last file"):  # lines rejected last time are read (and rejected) again
        difference = diff.compare(kept, path, rejected_before)
    if difference is None:
        return None
    changed = difference.read
    source = _open(path, dataset, column_map, **reading)
    encoding = reading["encoding"]
    source.progress.close()
    source = dataclasses.replace(source, blocks=iter(_blocks(changed, difference.read_bytes, encoding)),
                                 digest=difference.digest)
    gone_ids = _ids(difference.gone_bytes, source.layout, dataset, encoding)  # valid last time, not in the new file
    customers = db.partition("customers", segmentation_id)
    if not len(changed):  # the same lines, perhaps fewer: nothing to read
        source.progress.close()
        reasons = collections.Counter()
        counts = {"inserted": 0, "updated": 0, "deactivated": 0}
        return _deactivated(connection, path, customers, counts, reasons, difference, gone_ids, previous, batch_id,
                            export_mode, max_reject_share, staged=False, segmentation_id=segmentation_id), source, reasons
    writer, reasons, unique = _stage(connection, source, dataset)
    if not unique and sum(count for reason, count in reasons.items() if "appears again" in reason):
        raise ChangedLinesFallBack  # an id twice among the changed lines: the whole file says which wins
    with _step("changed lines of active customers whose last line is unchanged"):
        twice = connection.execute(
            sa.text(
                f"select stage.customer_id from import_stage as stage join {customers} as current"
                f" on current.segmentation_id = {int(segmentation_id)} and current.customer_id = stage.customer_id"
                " where stage.reason is null and current.is_active and stage.customer_id <> all(:gone) limit 1"
            ),
            {"gone": gone_ids},
        ).scalar()
    if twice is not None:  # its line of the last file is still in the new file: the id is there twice
        raise ChangedLinesFallBack
    counts = _merge(connection, batch_id, dataset_id, segmentation_id, deactivate=False, merge_join=False, few=True,
                    any_rejects=sum(reasons.values()) > 0)
    log.info("%s: %d of %d lines differ from the last file (batch %d); only they were read",
             path, len(changed), difference.new_lines, previous.batch_id)
    return _deactivated(connection, path, customers, counts, reasons, difference, gone_ids, previous, batch_id,
                        export_mode, max_reject_share, staged=True, segmentation_id=segmentation_id), source, reasons


def _deactivated(connection, path, customers, counts, reasons, difference, gone_ids, previous, batch_id, export_mode,
                 max_reject_share, staged: bool, segmentation_id: int) -> dict:
    """The import's counts once the customers whose line is gone (and who have no staged line) are
    marked inactive, in a full export that rejected no more than max_reject_share."""
    rejected = sum(reasons.values())
    read = difference.new_lines
    deactivate = export_mode == "full" and not _too_many_rejects(path, rejected, read, max_reject_share)
    if deactivate and gone_ids:
        staged_ids = " and current.customer_id not in (select customer_id from import_stage where customer_id is not null)"
        with _step("deactivate customers whose line is gone"):
            counts["deactivated"] = connection.execute(
                sa.text(
                    f"update {customers} as current set is_active = false, last_batch_id = :batch_id, updated_at = now()"
                    " where current.segmentation_id = :segmentation and current.customer_id = any(:gone)"
                    " and current.is_active" + (staged_ids if staged else "")
                ),
                {"gone": gone_ids, "batch_id": batch_id, "segmentation": segmentation_id},
            ).rowcount
    return {
        **counts,
        "method": METHOD,
        "read": read,
        "unchanged": read - rejected - counts["inserted"] - counts["updated"],
        "rejected": rejected,
        "deactivation_skipped": export_mode == "full" and not deactivate,
        "covers_table": deactivate,
        "open_at_end": False,
    }
