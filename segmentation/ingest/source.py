"""Reading a customer file: refusing what is not a CSV, the header, then numbered data blocks.

The file is read in blocks of `BLOCK_BYTES` and handed on as `Block`s of whole lines, each
ending in "\\n", with the number of the first (the header is line 1): the rest of the import
works on blocks rather than lines. Line ends may be LF, CRLF or CR alone (Excel's "CSV
(Macintosh)"); a UTF-8 BOM is dropped. A line longer than `MAX_LINE_CHARACTERS` is never held
in memory: it is read on to its end and handed on as a `LongLine` (its number, its first
1,000 characters and its length). Also: the header, delimiter detection, the progress bar or
log line, and the SHA-256 of the bytes read.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from segmentation.dataset import Dataset
from segmentation.errors import ImportRefused
from segmentation.ingest.filetype import refuse_what_is_not_csv
from segmentation.ingest.rules import MAX_HEADER_NAMES, ColumnLayout, _quote, map_header

log = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 20
#: characters of a line, or of a record whose quoted field spans lines, that are read; a
#: longer data line is rejected (its first KEPT_CHARACTERS stored), a longer header refuses the file
MAX_LINE_CHARACTERS = 1 << 20
KEPT_CHARACTERS = 1000
MAX_HEADER_FIELD_CHARACTERS = 128 << 10

_BOM = b"\xef\xbb\xbf"


class Block(NamedTuple):
    """Whole lines, each ending in "\\n", and the number of the first (the header is line 1)."""

    first: int
    text: str


class LongLine(NamedTuple):
    """A line longer than MAX_LINE_CHARACTERS: its number, its first characters and its length."""

    number: int
    head: str
    length: int

    @property
    def raw_text(self) -> str:
        """What is stored as the line's raw text: its first characters and a note of the rest."""
        return f"{self.head}… ({self.length - len(self.head):,} more characters not stored)"

    @property
    def reason(self) -> str:
        return f"line is {self.length:,} characters long; at most {MAX_LINE_CHARACTERS:,} are read"


LONG_LINE_PATTERN = f"line is … characters long; at most {MAX_LINE_CHARACTERS:,} are read"


def _chunks(handle: BinaryIO, digest: hashlib._Hash, progress) -> Iterator[bytes]:
    """The file's bytes in pieces of at most BLOCK_BYTES (and MAX_LINE_CHARACTERS): BOM dropped,
    and in a file whose first line ends in CR alone, every CR and CRLF made LF."""
    size = min(BLOCK_BYTES, MAX_LINE_CHARACTERS)  # so only a block's first line can be too long

    def read() -> bytes:
        chunk = handle.read(size)
        digest.update(chunk)
        progress(len(chunk))
        return chunk

    start = b""
    while chunk := read():  # read until the first line end tells LF (or CRLF) from CR
        start += chunk
        end = min((index for index in (start.find(b"\n"), start.find(b"\r")) if index >= 0), default=-1)
        if (0 <= end < len(start) - 1 or (end >= 0 and start[end] == 10)
                or len(start) > 4 * MAX_LINE_CHARACTERS):  # a header that long is refused anyway
            break
    if start.startswith(_BOM):
        start = start[3:]
    end = min((index for index in (start.find(b"\n"), start.find(b"\r")) if index >= 0), default=-1)
    if end < 0 or start[end] == 10 or start[end + 1:end + 2] == b"\n":
        if start:
            yield start
        while chunk := read():
            yield chunk
        return
    held = b""  # a CR at the end of a piece: the next may start with its LF
    chunk = start
    while chunk:
        chunk = held + chunk
        held = b""
        if chunk.endswith(b"\r"):
            chunk, held = chunk[:-1], b"\r"
        yield chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        chunk = read()
    if held:
        yield b"\n"


def _raw_chunks(handle: BinaryIO, digest: hashlib._Hash, progress) -> Iterator[bytes]:
    """The bytes from the handle's position on, in pieces of at most BLOCK_BYTES, as they are
    (for the tail of a file whose first line ends in LF or CRLF)."""
    while chunk := handle.read(BLOCK_BYTES):
        digest.update(chunk)
        progress(len(chunk))
        yield chunk


def _blocks(
    path: Path, digest: hashlib._Hash, progress, offset: int = 0, number: int = 1, encoding: str = "utf-8"
) -> Iterator[Block | LongLine]:
    """The file as `Block`s of whole lines (~BLOCK_BYTES each) and `LongLine`s, in file order.

    Every line of a block's text ends in "\\n" (one is added to a last line without it) and
    has its "\\r\\n" turned into "\\n". Working on blocks rather than lines keeps the per-line
    Python cost of a plain file near zero. Memory stays bounded: a line is held only up to
    MAX_LINE_CHARACTERS characters (at most four bytes each); beyond, it is decoded piece by
    piece and only its length and head are kept. Bytes that are not valid in `encoding`
    become lone surrogates (see the module's docstring).
    With `offset`, reading starts at that byte, the first line after it being line `number`
    (the tail of a file that starts with an earlier import's bytes; line ends LF or CRLF).
    """
    carry = b""  # the start of a line whose end has not been read yet
    with path.open("rb") as handle:
        if offset:
            handle.seek(offset)
            chunks = _raw_chunks(handle, digest, progress)
        else:
            chunks = _chunks(handle, digest, progress)
        for chunk in chunks:
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            # bytes >= characters: count them only when the bytes alone exceed the limit
            while cut == 0 and len(data) > MAX_LINE_CHARACTERS and _characters(data, encoding) > MAX_LINE_CHARACTERS:
                long_line, data = _skip_line(number, data, chunks, encoding)
                progress(0, 1)
                yield long_line
                number += 1
                cut = data.rfind(b"\n") + 1  # `data` is now what followed the line: part of one piece
            data, carry = data[:cut], data[cut:]
            if data:
                yield from _decoded(number, data, progress, encoding)
                number += data.count(b"\n")
        if carry:  # the last line has no line end (or follows a long line in the last piece)
            yield from _decoded(number, carry if carry.endswith(b"\n") else carry + b"\n", progress, encoding)


def _characters(data: bytes, encoding: str) -> int:
    """About how many characters `data` holds."""
    return len(data.decode(encoding, "ignore"))


def _decoded(number: int, data: bytes, progress, encoding: str) -> Iterator[Block | LongLine]:
    """Whole lines of bytes (from line `number`) as a Block, its first line as a LongLine if too long."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:  # rare: only then the slower error handler
        text = data.decode(encoding, "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    first_end = text.find("\n")
    if first_end > MAX_LINE_CHARACTERS:  # a line that began in an earlier piece
        yield LongLine(number, text[:KEPT_CHARACTERS], first_end)
        number += 1
        text = text[first_end + 1:]
        progress(0, 1)
    if text:
        n_lines = text.count("\n")
        progress(0, n_lines)
        yield Block(number, text)


def _skip_line(number: int, start: bytes, chunks: Iterator[bytes], encoding: str) -> tuple[LongLine, bytes]:
    """Read a too-long line (its first bytes `start`) to its end without keeping it.

    Returns the LongLine and the bytes after its line end.
    """
    decode = codecs.getincrementaldecoder(encoding)("surrogateescape").decode
    text = decode(start)
    head, length = text[:KEPT_CHARACTERS], len(text)
    last = start[-1:]
    rest = b""
    for chunk in chunks:
        end = chunk.find(b"\n")
        text = decode(chunk if end < 0 else chunk[:end], final=end >= 0)
        length += len(text)
        if len(head) < KEPT_CHARACTERS:
            head += text[:KEPT_CHARACTERS - len(head)]
        if end < 0:
            last = chunk[-1:] or last
            continue
        last = chunk[end - 1:end] if end else last
        rest = chunk[end + 1:]
        break
    else:
        length += len(decode(b"", final=True))
    if last == b"\r":  # a CRLF line end: the CR is not part of the line
        length -= 1
    return LongLine(number, head, length), rest


def _numbered_lines(path: Path, digest: hashlib._Hash, progress, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield (line number, text without line end) for every line; the header is line 1.

    A too-long line gives its stored raw text (its head and a note of the rest).
    """
    for piece in _blocks(path, digest, progress, encoding=encoding):
        if isinstance(piece, LongLine):
            yield piece.number, piece.raw_text
        else:
            yield from enumerate(piece.text.split("\n")[:-1], start=piece.first)


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


def _header_record(source: str, blocks: Iterator[Block | LongLine]) -> tuple[str, int, str]:
    """(header text, lines it spans, the text of whole lines after it) from the file's first pieces.

    A header field in double quotes may hold a line break (the header then spans lines).
    """
    never_closed = f"{source} line 1: a double quote in the header is never closed"
    piece = next(blocks, None)
    if piece is None:  # nothing but a byte order mark
        raise ImportRefused(f"{source}: the file is empty; expected a header line and customer lines")
    if isinstance(piece, LongLine):
        raise ImportRefused(
            f"{source} line 1: the header is {piece.length:,} characters long; at most"
            f" {MAX_LINE_CHARACTERS:,} are read. Is this a customer export?"
        )
    text = piece.text
    end = text.find("\n")
    quotes = text.count('"', 0, end)
    while quotes % 2:  # a quoted header field goes on past the line end
        start = end + 1
        end = text.find("\n", start)
        while end < 0:
            piece = next(blocks, None)
            if piece is None or isinstance(piece, LongLine) or len(text) > MAX_LINE_CHARACTERS:
                raise ImportRefused(never_closed)
            end = len(text) + piece.text.find("\n")  # a block always ends in a line end
            text += piece.text
        if end > MAX_LINE_CHARACTERS:
            raise ImportRefused(never_closed)
        quotes += text.count('"', start, end)
    header = text[:end]
    return header, header.count("\n") + 1, text[end + 1:]


def _header_fields(source: str, header: str, delimiter: str) -> list[str]:
    """The header's names; ImportRefused for NUL bytes or a field over 128 KiB."""
    if "\x00" in header:
        raise ImportRefused(
            f"{source} line 1: the header contains NUL bytes, so the file is UTF-16 text or not text"
            " at all; save it as CSV UTF-8 and import that file"
        )
    too_long = (f"{source} line 1: a header field is longer than {MAX_HEADER_FIELD_CHARACTERS:,} characters."
                " Is this a customer export?")
    if max(map(len, header.split(delimiter))) > MAX_HEADER_FIELD_CHARACTERS:
        raise ImportRefused(too_long)
    try:
        return next(csv.reader([header], delimiter=delimiter, skipinitialspace=True))
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise ImportRefused(too_long) from None
        raise ImportRefused(f"{source} line 1: cannot read the header ({error})") from None


@dataclasses.dataclass
class _Source:
    """An opened customer file: its header layout and its data pieces (from the line after the header)."""

    path: Path
    layout: ColumnLayout
    blocks: Iterator[Block | LongLine]
    digest: hashlib._Hash
    progress: _Progress

    @classmethod
    def open(cls, path: Path, dataset: Dataset, column_map: dict[str, str], encoding: str = "utf-8",
             decimal_separator: str = "auto") -> _Source:
        """The file opened and its header read: `encoding` decodes it, `decimal_separator` ("auto":
        a point, and in a file delimited by ';' a comma too) says how its numbers mark decimals."""
        source = str(path)
        if not path.is_file():
            raise ImportRefused(f"{source}: no such file")
        if path.stat().st_size == 0:
            raise ImportRefused(f"{source}: the file is empty; expected a header line and customer lines")
        refuse_what_is_not_csv(path)
        digest = hashlib.sha256()
        progress = _Progress(path)
        blocks = _blocks(path, digest, progress, encoding=encoding)
        try:
            header_text, header_lines, rest = _header_record(source, blocks)
            delimiter = _detect_delimiter(header_text)
            header = _header_fields(source, header_text, delimiter)
            marks = decimal_marks(decimal_separator, delimiter)
            layout = dataclasses.replace(map_header(header, dataset, column_map, source), delimiter=delimiter,
                                         encoding=encoding, decimal_marks=marks)
        except BaseException:
            progress.close()
            raise

        def data_blocks() -> Iterator[Block | LongLine]:
            if rest:
                yield Block(1 + header_lines, rest)
            yield from blocks

        return cls(path, layout, data_blocks(), digest, progress)

    def tail(self, offset: int, number: int, digest: hashlib._Hash) -> _Source:
        """This file from byte `offset` on, its first line being line `number`; `digest` has
        hashed the bytes before `offset` and goes on with the rest."""
        blocks = _blocks(self.path, digest, self.progress, offset, number, self.layout.encoding)
        return dataclasses.replace(self, blocks=blocks, digest=digest)


def decimal_marks(decimal_separator: str, delimiter: str) -> str:
    """The characters a number of the file may mark its decimals with: the `decimal_separator`
    setting's, and for "auto" a point, plus a comma in a file delimited by ';' (what Excel
    writes where the comma is the decimal mark)."""
    if decimal_separator == "auto":
        return ".," if delimiter == ";" else "."
    return decimal_separator


def _open(path: Path, dataset: Dataset, column_map: dict[str, str], encoding: str = "utf-8",
          decimal_separator: str = "auto") -> _Source:
    source = _Source.open(path, dataset, column_map, encoding, decimal_separator)
    ignored = source.layout.ignored
    if ignored:
        names = ", ".join(_quote(name) for name in ignored[:MAX_HEADER_NAMES])
        if len(ignored) > MAX_HEADER_NAMES:
            names += f" and {len(ignored) - MAX_HEADER_NAMES} more"
        log.info("%s: ignoring columns that are not declared: %s", path, names)
    return source
