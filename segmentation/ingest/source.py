"""Reading a customer file: its header, then its data as ~1 MiB blocks of numbered lines.

The file is read in blocks of `BLOCK_BYTES`; each block holds whole lines (line ends made
"\\n", the BOM dropped) and the number of its first line (the header is line 1), so the rest of
the import works on blocks rather than lines. Also: delimiter detection, the progress bar or
log line, and the SHA-256 of the bytes read.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from segmentation.dataset import Dataset
from segmentation.errors import ImportRefused
from segmentation.ingest.rules import ColumnLayout, _quote, map_header

log = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 20


def _blocks(path: Path, digest: hashlib._Hash, progress) -> Iterator[tuple[int, str]]:
    """Yield (number of the block's first line, text of whole lines) for ~1 MiB blocks.

    The header is line 1. Every line of a block's text ends in "\\n" (one is added to a last
    line without it) and has its "\\r\\n" turned into "\\n"; the BOM is dropped. Working on
    blocks rather than lines keeps the per-line Python cost of a plain file near zero.
    """
    source = str(path)
    number = 1
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(BLOCK_BYTES)
            digest.update(chunk)
            data = carry + chunk
            if not data:
                return
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # a line longer than the block: keep reading
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                line = number + data.count(b"\n", 0, error.start)
                column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
                raise ImportRefused(
                    f"{source} line {line}: byte {data[error.start]:#04x} at column {column}"
                    " is not valid UTF-8; save the export as UTF-8 and import it again"
                ) from None
            if not text.endswith("\n"):
                text += "\n"
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            n_lines = text.count("\n")
            progress(len(data), n_lines)
            yield number, text
            number += n_lines
            if not chunk:
                return


def _numbered_lines(path: Path, digest: hashlib._Hash, progress) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without line end) for every line; the header is line 1."""
    for first, text in _blocks(path, digest, progress):
        yield from enumerate(text.split("\n")[:-1], start=first)


def _detect_delimiter(header: str) -> str:
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


class _Progress:
    """A tqdm bar (bytes, with rows and rows/s) on a terminal; otherwise a log line every 10 s."""

    def __init__(self, path: Path, log_every_seconds: float = 10.0) -> None:
        self.name = path.name
        self.total = path.stat().st_size
        self.bar = None
        self.seen = 0
        self.rows = 0
        self.started = self.last_log = time.monotonic()
        self.log_every_seconds = log_every_seconds
        if sys.stderr.isatty() and self.total > 8 * BLOCK_BYTES:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="B", unit_scale=True, desc=f"import {path.name}")

    def __call__(self, n_bytes: int, n_lines: int = 0) -> None:
        self.seen += n_bytes
        self.rows += n_lines
        rate = self.rows / max(time.monotonic() - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rows:,} lines, {rate:,.0f} lines/s", refresh=False)
            self.bar.update(n_bytes)
        elif time.monotonic() - self.last_log > self.log_every_seconds:
            self.last_log = time.monotonic()
            log.info("import %s: %.0f%% read, %d lines, %.0f lines/s",
                     self.name, 100 * self.seen / max(self.total, 1), self.rows, rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass
class _Source:
    """An opened customer file: its header layout and its data blocks (from line 2)."""

    path: Path
    layout: ColumnLayout
    blocks: Iterator[tuple[int, str]]
    digest: hashlib._Hash
    progress: _Progress

    @classmethod
    def open(cls, path: Path, dataset: Dataset, column_map: dict[str, str]) -> _Source:
        source = str(path)
        if not path.is_file():
            raise ImportRefused(f"{source}: no such file")
        if path.stat().st_size == 0:
            raise ImportRefused(f"{source}: the file is empty; expected a header line and customer lines")
        digest = hashlib.sha256()
        progress = _Progress(path)
        blocks = _blocks(path, digest, progress)
        try:
            _, first = next(blocks)
            header_text, rest = first.split("\n", 1)
            delimiter = _detect_delimiter(header_text)
            try:
                header = next(csv.reader([header_text], delimiter=delimiter, skipinitialspace=True))
            except csv.Error as error:
                raise ImportRefused(f"{source} line 1: cannot read the header ({error})") from None
            layout = dataclasses.replace(map_header(header, dataset, column_map, source), delimiter=delimiter)
        except BaseException:
            progress.close()
            raise

        def data_blocks() -> Iterator[tuple[int, str]]:
            if rest:
                yield 2, rest
            yield from blocks

        return cls(path, layout, data_blocks(), digest, progress)


def _open(path: Path, dataset: Dataset, column_map: dict[str, str]) -> _Source:
    source = _Source.open(path, dataset, column_map)
    if source.layout.ignored:
        log.info("%s: ignoring columns that are not declared: %s", path,
                 ", ".join(_quote(name) for name in source.layout.ignored))
    return source

