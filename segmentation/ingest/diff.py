"""Telling which lines of a full export changed since the last import, without reading the rest.

A nightly full export is yesterday's file with a few lines changed, a few added and a few gone.
The import keeps a copy of the file it last imported for each segmentation (`Kept`, in the data
folder beside the reports, with a note of the batch it belongs to). The next file is compared
with that copy as bytes: lines that are byte for byte the same as a line of the copy are
unchanged (their customer is stored as that line left it); only the other lines are read,
checked and merged (`merge._changed_load`).

`compare` pairs the lines of the two files in two ways, both vectorised with numpy:
1. line i of the new file with line i of the copy (in-place edits and lines added at the end);
   pairs of equal length are compared as bytes in runs (one comparison per run of such pairs);
2. when many lines differ that way (lines added or removed in the middle shift every later
   line), by a signature of each line (its length, first and last bytes), matched between the
   files, every matched pair then compared as bytes in runs of consecutive pairs.
A line is unchanged only when it is byte for byte equal to the line it is paired with, so a
signature that two different lines share can only make a line look changed, never unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: above this share of changed lines the file is merged whole (the staged merge is then cheaper)
MAX_CHANGED_SHARE = 0.2
_NEWLINE, _QUOTE = 10, 34


@dataclasses.dataclass
class Difference:
    """The new file's data lines that are not in the copy (`new_changed`, 0-based indices of data
    lines: line number - 2), the copy's data lines not in the new file (`old_changed`), and for every
    unchanged new line the copy's line it equals (`pairs`: old index per new index, -1 if none)."""

    new_changed: np.ndarray
    old_changed: np.ndarray
    pairs: np.ndarray
    new_lines: int
    new: _Lines
    old: _Lines


class _Lines:
    """A file as bytes with the bounds of its lines (the header first): starts and ends (exclusive, line end included)."""

    def __init__(self, data: np.ndarray):
        self.data = data
        ends = np.flatnonzero(data == _NEWLINE) + 1
        if not len(ends) or ends[-1] != len(data):
            ends = np.append(ends, len(data))  # a last line without a line end
        self.ends = ends
        self.starts = np.concatenate([[0], ends[:-1]])
        self.lengths = self.ends - self.starts

    def line(self, index: int) -> bytes:
        return self.data[self.starts[index] : self.ends[index]].tobytes()

    def line_ends_are_newlines(self) -> bool:
        """Whether every carriage return ends a line (LF or CRLF line ends, not CR alone)."""
        returns = np.flatnonzero(self.data == 13)
        return bool((returns + 1 < len(self.data)).all() and (self.data[returns + 1] == _NEWLINE).all())

    def quotes_close_on_every_line(self) -> bool:
        """Whether no quoted field spans lines (an even number of quotes on every line)."""
        quotes = self.data == _QUOTE
        if not quotes.any():
            return True
        counted = np.concatenate([[0], np.cumsum(quotes, dtype=np.int64)])
        return bool(((counted[self.ends] - counted[self.starts]) % 2 == 0).all())


def _equal_runs(new: _Lines, old: _Lines, new_index: np.ndarray, old_index: np.ndarray) -> np.ndarray:
    """For pairs (new line, old line), whether the two are byte for byte equal. Pairs must be of
    equal length; consecutive pairs (both indices up by one) are compared in one run."""
    if not len(new_index):
        return np.zeros(0, dtype=bool)
    breaks = np.flatnonzero((np.diff(new_index) != 1) | (np.diff(old_index) != 1)) + 1
    firsts, stops = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(new_index)]])
    new_from, new_to = new.starts[new_index[firsts]], new.ends[new_index[stops - 1]]
    old_from = old.starts[old_index[firsts]]
    differing = []  # positions (in the new file) of bytes that differ from the paired line's
    for a, b, c in zip(new_from.tolist(), new_to.tolist(), old_from.tolist()):
        found = np.flatnonzero(new.data[a:b] != old.data[c : c + b - a])
        if len(found):
            differing.append(found + a)
    equal = np.ones(len(new_index), dtype=bool)
    if differing:
        bad_lines = np.unique(np.searchsorted(new.ends, np.concatenate(differing), side="right"))
        equal[np.isin(new_index, bad_lines)] = False
    return equal


def _signatures(lines: _Lines) -> np.ndarray:
    """A 64-bit signature per line: its length and its first and last eight bytes, mixed."""
    data = np.concatenate([lines.data, np.zeros(8, dtype=np.uint8)])
    step = np.arange(8)
    first = data[np.minimum(lines.starts[:, None] + step, lines.ends[:, None] - 1)].view("<u8")[:, 0]
    last = data[np.maximum(lines.ends[:, None] - 8 + step, lines.starts[:, None])].view("<u8")[:, 0]
    with np.errstate(over="ignore"):
        mixed = first * np.uint64(0x9E3779B97F4A7C15) ^ last * np.uint64(0xC2B2AE3D27D4EB4F)
        return mixed ^ lines.lengths.astype(np.uint64) * np.uint64(0x165667B19E3779F9)


def _pair_by_signature(new: _Lines, old: _Lines) -> np.ndarray:
    """For each new data line, a copy's data line with the same signature (-1 if none): the k-th
    new line with a signature takes the k-th copy's line with it (both in file order)."""
    new_signatures, old_signatures = _signatures(new)[1:], _signatures(old)[1:]
    new_order, old_order = np.argsort(new_signatures, kind="stable"), np.argsort(old_signatures, kind="stable")
    new_sorted, old_sorted = new_signatures[new_order], old_signatures[old_order]
    position = np.searchsorted(old_sorted, new_sorted)  # sorted into sorted: one pass
    group_start = np.concatenate([[0], np.flatnonzero(np.diff(new_sorted) != 0) + 1])
    counts = np.diff(np.concatenate([group_start, [len(new_sorted)]]))
    candidate = position + np.arange(len(new_sorted)) - np.repeat(group_start, counts)
    found = candidate < len(old_sorted)
    found[found] = old_sorted[candidate[found]] == new_sorted[found]
    pairs = np.full(len(new_signatures), -1, dtype=np.int64)
    pairs[new_order[found]] = old_order[candidate[found]]
    return pairs


def compare(old_path: Path, new_path: Path) -> Difference | None:
    """The lines of `new_path` not in `old_path` and the other way round, or None when the files
    cannot be compared line by line (another header, a quoted field spanning lines) or when more
    than MAX_CHANGED_SHARE of the lines differ."""
    try:
        old, new = _Lines(np.fromfile(old_path, dtype=np.uint8)), _Lines(np.fromfile(new_path, dtype=np.uint8))
    except OSError:  # not a readable file: the whole import says why
        return None
    if old.line(0) != new.line(0) or not new.quotes_close_on_every_line() or not old.quotes_close_on_every_line():
        return None
    if not new.line_ends_are_newlines() or not old.line_ends_are_newlines():
        return None
    n_new, n_old = len(new.starts) - 1, len(old.starts) - 1
    pairs = np.full(n_new, -1, dtype=np.int64)
    common = np.arange(min(n_new, n_old))
    candidates = common[new.lengths[1 : len(common) + 1] == old.lengths[1 : len(common) + 1]]
    if len(candidates) >= (1 - MAX_CHANGED_SHARE) * n_new:  # line i and line i mostly alike: compare them
        equal = _equal_runs(new, old, candidates + 1, candidates + 1)
        pairs[candidates[equal]] = candidates[equal]
    if (pairs < 0).sum() > MAX_CHANGED_SHARE * max(n_new, 1):  # lines added or removed in the middle: realign
        pairs = _pair_by_signature(new, old)
        matched = np.flatnonzero(pairs >= 0)
        runs = 1 + int(((np.diff(matched) != 1) | (np.diff(pairs[matched]) != 1)).sum()) if len(matched) else 0
        if runs > MAX_CHANGED_SHARE * max(n_new, 1):  # the lines moved about: not worth comparing one by one
            return None
        equal = _equal_runs(new, old, matched + 1, pairs[matched] + 1)
        pairs[matched[~equal]] = -1
    new_changed = np.flatnonzero(pairs < 0)
    if len(new_changed) > MAX_CHANGED_SHARE * max(n_new, 1):
        return None
    used = np.zeros(n_old, dtype=bool)
    used[pairs[pairs >= 0]] = True
    return Difference(new_changed=new_changed, old_changed=np.flatnonzero(~used), pairs=pairs, new_lines=n_new,
                      new=new, old=old)


# --- the copy of the last imported file -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kept:
    """Where a segmentation's last imported customer file is kept, with a note of its batch."""

    folder: Path

    @property
    def file(self) -> Path:
        return self.folder / "customers.csv"

    @property
    def note(self) -> Path:
        return self.folder / "customers.json"

    def matching(self, batch_id: int, sha256: str) -> Path | None:
        """The kept file when it is the file of batch `batch_id` (with that SHA-256), untouched since."""
        try:
            note = json.loads(self.note.read_text())
            stat = self.file.stat()
        except (OSError, ValueError):
            return None
        if note.get("batch_id") != batch_id or note.get("sha256") != sha256:
            return None
        if note.get("bytes") != stat.st_size or note.get("mtime_ns") != stat.st_mtime_ns:
            return None
        return self.file

    def keep(self, path: Path, batch_id: int, sha256: str) -> None:
        """Keep a copy of `path`, the file of batch `batch_id`; a failure only costs the next import its speed."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.file.with_suffix(".partial")
            shutil.copyfile(path, partial)
            os.replace(partial, self.file)
            stat = self.file.stat()
            self.note.write_text(json.dumps({"batch_id": batch_id, "sha256": sha256, "bytes": stat.st_size,
                                             "mtime_ns": stat.st_mtime_ns}))
        except OSError as error:
            log.warning("could not keep a copy of %s for the next import to compare with (%s); it will read"
                        " the whole file", path, error)

    def forget(self) -> None:
        for file in (self.note, self.file):
            file.unlink(missing_ok=True)
