"""Telling which lines of a full export changed since the last import, without reading the rest.

A nightly full export is yesterday's file with a few lines changed, a few added and a few gone.
The import keeps a copy of the file it last imported for each segmentation (`Kept`, in the data
folder beside the reports, with a note of the batch it belongs to). The next file is compared
with that copy as bytes: lines that are byte for byte the same as a line of the copy are
unchanged (their customer is stored as that line left it); only the other lines are read,
checked and merged (`changed.changed_load`).

`compare` pairs the lines of the two files in two ways:
1. line i of the new file with line i of the copy (in-place edits, lines added or removed at the
   end), streamed through both files in blocks of CHUNK_BYTES: memory does not grow with the
   files, only with the lines that differ (their bytes are kept for the import to read);
   pairs of equal length are compared as bytes in runs (one comparison per run of such pairs);
2. when more than MAX_CHANGED_SHARE of the lines differ that way (lines added or removed in the
   middle shift every later line), and both files are under IN_MEMORY_MAX_BYTES, by a signature of
   each line (its length, first and last bytes), matched between the files in memory, every
   matched pair then compared as bytes in runs of consecutive pairs. Larger files are then
   merged whole, which is slower but keeps memory flat.
A line is unchanged only when it is byte for byte equal to the line it is paired with, so a
signature that two different lines share can only make a line look changed, never unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: above this share of changed lines the file is merged whole (the staged merge is then cheaper)
MAX_CHANGED_SHARE = 0.2
#: bytes of the new file compared per step
CHUNK_BYTES = 16 << 20
#: realigning lines inserted or removed in the middle holds both files in memory: only below this size each
IN_MEMORY_MAX_BYTES = 64 << 20
_NEWLINE, _QUOTE, _RETURN = 10, 34, 13


@dataclasses.dataclass
class Difference:
    """What the import must read of the new file and what is gone from the copy.

    `read`: the new file's data lines (0-based: line number - 2) that are not byte-equal to the
    copy's line they pair with, or that pair with a line the last import rejected (`rejected`),
    in file order, with their bytes (`read_bytes`, line ends included). `gone`: the copy's data
    lines with no equal line in the new file, not rejected last time, with their bytes.
    `new_changed` / `old_changed`: every new line with no equal line in the copy, and every line of
    the copy with none in the new file (rejected or not). `pairs`: the copy's line each new line
    equals (-1 if none), or None when line i pairs with line i."""

    read: np.ndarray
    read_bytes: list[bytes]
    gone: np.ndarray
    gone_bytes: list[bytes]
    new_changed: np.ndarray
    old_changed: np.ndarray
    new_lines: int
    digest: hashlib._Hash
    pairs: np.ndarray | None = None

    def paired(self) -> np.ndarray:
        """The copy's line each new line equals, -1 if none (one int per line: for tests and small files)."""
        if self.pairs is not None:
            return self.pairs
        pairs = np.arange(self.new_lines, dtype=np.int64)
        pairs[self.new_changed] = -1
        return pairs


class _Lines:
    """A file as bytes with the bounds of its lines (the header first): starts and ends (exclusive, line end included)."""

    def __init__(self, data: np.ndarray, final: bool = True):
        self.data = data
        ends = np.flatnonzero(data == _NEWLINE) + 1
        if final and len(data) and (not len(ends) or ends[-1] != len(data)):
            ends = np.append(ends, len(data))  # a last line without a line end
        self.ends = ends
        self.starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        self.lengths = self.ends - self.starts

    def line(self, index: int) -> bytes:
        return self.data[self.starts[index] : self.ends[index]].tobytes()

    def line_ends_are_newlines(self) -> bool:
        """Whether every carriage return ends a line (LF or CRLF line ends, not CR alone)."""
        if _RETURN not in self.data:
            return True
        returns = np.flatnonzero(self.data == _RETURN)
        return bool((returns + 1 < len(self.data)).all() and (self.data[returns + 1] == _NEWLINE).all())

    def quotes_close_on_every_line(self) -> bool:
        """Whether no quoted field spans lines (an even number of quotes on every line)."""
        if _QUOTE not in self.data:
            return True
        quotes = self.data == _QUOTE
        counted = np.concatenate([[0], np.cumsum(quotes, dtype=np.int64)])
        return bool(((counted[self.ends] - counted[self.starts]) % 2 == 0).all())

    def plain(self) -> bool:
        return self.quotes_close_on_every_line() and self.line_ends_are_newlines()


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


class _Realign(Exception):
    """Line i and line i differ too often: lines were added or removed in the middle."""


class _Stream:
    """One file read in blocks of whole lines."""

    def __init__(self, path: Path, digest: hashlib._Hash | None = None):
        self.handle = path.open("rb")
        self.digest = digest
        self.buffer = b""
        self.eof = False

    def header(self) -> bytes:
        line = self.handle.readline()
        if self.digest is not None:
            self.digest.update(line)
        return line

    def _more(self, size: int) -> None:
        block = self.handle.read(size)
        if not block:
            self.eof = True
        elif self.digest is not None:
            self.digest.update(block)
        self.buffer += block

    def block(self) -> _Lines | None:
        """The next block of whole lines (about CHUNK_BYTES, or the rest), None at the end."""
        while not self.eof and len(self.buffer) < CHUNK_BYTES:
            self._more(CHUNK_BYTES)
        while not self.eof and b"\n" not in self.buffer:  # a line longer than a block
            self._more(CHUNK_BYTES)
        return self._cut(None)

    def lines(self, n: int) -> _Lines | None:
        """The next n lines (fewer at the end), None at the end."""
        while not self.eof and self.buffer.count(b"\n") < n:
            self._more(CHUNK_BYTES)
        return self._cut(n)

    def _cut(self, n: int | None) -> _Lines | None:
        if not self.buffer:
            return None
        ends = _Lines(np.frombuffer(self.buffer, dtype=np.uint8), final=self.eof).ends
        if not len(ends):
            return None
        cut = int(ends[-1] if n is None else ends[min(n, len(ends)) - 1])
        data, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return _Lines(np.frombuffer(data, dtype=np.uint8), final=True)

    def close(self) -> None:
        self.handle.close()


def _texts(lines: _Lines, local: np.ndarray) -> list[bytes]:
    data = lines.data
    return [data[start:end].tobytes() for start, end in zip(lines.starts[local].tolist(), lines.ends[local].tolist())]


def _streamed(old_path: Path, new_path: Path, rejected: np.ndarray) -> Difference | None:
    """`compare` by pairing line i with line i, streamed; raises _Realign when too many differ."""
    digest = hashlib.sha256()
    new, old = _Stream(new_path, digest), _Stream(old_path)
    expected_lines = None
    read, read_bytes, gone, gone_bytes, new_changed, old_changed = [], [], [], [], [], []
    n_changed = 0
    new_base = old_base = 0
    try:
        header = new.header()
        if header != old.header():
            return None
        if not _Lines(np.frombuffer(header, dtype=np.uint8)).plain():
            return None
        size = max(new_path.stat().st_size - len(header), 1)
        while True:
            new_block = new.block()
            if new_block is None:
                break
            n = len(new_block.ends)
            old_block = old.lines(n)
            paired = 0 if old_block is None else len(old_block.ends)
            if not new_block.plain() or (old_block is not None and not old_block.plain()):
                return None
            equal = np.zeros(n, dtype=bool)
            if paired:
                candidates = np.flatnonzero(new_block.lengths[:paired] == old_block.lengths)
                equal[candidates[_equal_runs(new_block, old_block, candidates, candidates)]] = True
            differ = np.flatnonzero(~equal)
            again = np.flatnonzero(equal & np.isin(np.arange(n) + old_base, rejected)) if len(rejected) else differ[:0]
            to_read = np.union1d(differ, again)
            read.append(to_read + new_base)
            read_bytes += _texts(new_block, to_read)
            new_changed.append(differ + new_base)
            if paired:
                old_differ = np.flatnonzero(~equal[:paired])
                old_changed.append(old_differ + old_base)
                old_gone = old_differ[~np.isin(old_differ + old_base, rejected)]
                gone.append(old_gone + old_base)
                gone_bytes += _texts(old_block, old_gone)
            n_changed += len(differ)
            new_base += n
            old_base += paired
            if expected_lines is None:
                expected_lines = size / max(new_block.ends[-1] / n, 1)
            if n_changed > MAX_CHANGED_SHARE * max(expected_lines, new_base):
                raise _Realign
        while True:  # the copy's lines past the new file's end are gone
            old_block = old.lines(1 << 20)
            if old_block is None:
                break
            local = np.arange(len(old_block.ends))
            old_changed.append(local + old_base)
            old_gone = local[~np.isin(local + old_base, rejected)]
            gone.append(old_gone + old_base)
            gone_bytes += _texts(old_block, old_gone)
            old_base += len(local)
    finally:
        new.close()
        old.close()

    def joined(parts):
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    new_changed_all = joined(new_changed)
    if len(new_changed_all) > MAX_CHANGED_SHARE * max(new_base, 1):
        raise _Realign
    return Difference(read=joined(read), read_bytes=read_bytes, gone=joined(gone), gone_bytes=gone_bytes,
                      new_changed=new_changed_all, old_changed=joined(old_changed), new_lines=new_base, digest=digest)


def _realigned(old_path: Path, new_path: Path, rejected: np.ndarray) -> Difference | None:
    """`compare` for lines added or removed in the middle: both files in memory, paired by signature."""
    old, new = _Lines(np.fromfile(old_path, dtype=np.uint8)), _Lines(np.fromfile(new_path, dtype=np.uint8))
    if old.line(0) != new.line(0) or not new.plain() or not old.plain():
        return None
    n_new, n_old = len(new.starts) - 1, len(old.starts) - 1
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
    old_changed = np.flatnonzero(~used)
    read = np.union1d(new_changed, np.flatnonzero(np.isin(pairs, rejected)))
    gone = np.setdiff1d(old_changed, rejected)
    return Difference(read=read, read_bytes=_texts(new, read + 1), gone=gone, gone_bytes=_texts(old, gone + 1),
                      new_changed=new_changed, old_changed=old_changed, new_lines=n_new,
                      digest=hashlib.sha256(new.data), pairs=pairs)


def compare(old_path: Path, new_path: Path, rejected: np.ndarray | None = None) -> Difference | None:
    """The lines of `new_path` not in `old_path` and the other way round (`rejected`: the copy's
    data lines the last import rejected, to be read again where they are still there), or None
    when the files cannot be compared line by line (another header, a quoted field spanning lines,
    a lone carriage return) or when more than MAX_CHANGED_SHARE of the lines differ."""
    rejected = np.zeros(0, dtype=np.int64) if rejected is None else np.asarray(rejected, dtype=np.int64)
    try:
        try:
            return _streamed(old_path, new_path, rejected)
        except _Realign:
            if max(old_path.stat().st_size, new_path.stat().st_size) > IN_MEMORY_MAX_BYTES:
                log.info("%s: lines were added or removed in the middle of a file over %d MB; it is merged whole",
                         new_path, IN_MEMORY_MAX_BYTES >> 20)
                return None
            return _realigned(old_path, new_path, rejected)
    except OSError:  # not a readable file: the whole import says why
        return None


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
