"""Data lines into COPY records: plain blocks by the fast path, other lines by the row rules.

A record is one line, or several when a field in double quotes holds a line break (RFC 4180;
Excel writes them for multi-line addresses). Such a record counts once, under the number of
the line it starts on, and is stored whole when rejected.
"""

from __future__ import annotations

import bisect
import collections
import csv
import re
from collections.abc import Iterable

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.dataset import Dataset
from segmentation.errors import ImportRefused
from segmentation.ingest.plain import (
    _converter,
    _verbatim_converter,
    array_literal,
    plain_line_pattern,
    verbatim_line_pattern,
)
from segmentation.ingest.rules import (
    _LONE_SURROGATE,
    UNBALANCED_QUOTE,
    ColumnLayout,
    ParsedLine,
    RowRejected,
    id_in_prefix,
    parse_line,
)
from segmentation.ingest.source import (
    LONG_LINE_PATTERN,
    MAX_LINE_CHARACTERS,
    Block,
    LongLine,
    _Source,
)


def storable(text: str) -> str:
    """`text` with what PostgreSQL's text cannot hold (NUL bytes, lone surrogates) made U+FFFD."""
    text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def _csv_quoted(value: str) -> str:
    """A CSV field that COPY reads back as `storable(value)` (never NULL)."""
    return '"' + storable(value).replace('"', '""') + '"'


class _Writer:
    """Turns data lines into COPY (CSV) records `id,"{values}"` + tail; rejected records go to `reject`.
    With `numbered`, every record (a rejected one too) starts with its record number.

    A block whose every line is plain is checked by one regular expression and converted by
    the generated `_converter` (or, when every line is already in its stored spelling, by
    `_verbatim_converter`, one split per line); other blocks are read line by line (plain lines still take the
    converter, the others `parse_line`). `reject(number, customer_id, raw_text, reason)`
    returns the record to send for a rejected record, if any. `reasons` counts reject patterns.

    A line with an odd number of double quotes opens a quoted field that goes on past its line
    end: the following lines join it until the quotes balance. The joined record is one record
    when it is well formed (RFC 4180) with the header's number of fields; when not, or when no line
    closes it within MAX_LINE_CHARACTERS or before the end of the file, its first line alone
    is rejected (unbalanced double quote) and the lines after it are read again as lines of
    their own. Call `finish()` after the last piece.

    Records are numbered from 2 in file order (as the staging table numbers them); a header
    or records that span lines shift the file's line numbers: `line_number(record_number)`.
    """

    def __init__(self, layout: ColumnLayout, dataset: Dataset, tail: str, reject, numbered: bool = False) -> None:
        self.layout = layout
        self.numbered = numbered
        self.dataset = dataset
        self.tail = tail + "\n"
        self.reject = reject
        plain = plain_line_pattern(layout, dataset)
        # atomic groups: a line that matched is never re-tried (its match must end at its own newline)
        self.plain_block = re.compile(f"(?>{plain}\n)*") if plain else None
        unquoted = plain_line_pattern(layout, dataset, quotes=False)
        self.unquoted_block = re.compile(f"(?>{unquoted}\n)*") if unquoted else None
        self.plain_line = re.compile(plain) if plain else None
        self.convert = _converter(layout, dataset, numbered)
        # lines whose text after the id is the array's body; only for this class's records (a
        # subclass with records of its own, such as the order writer, formats them itself)
        verbatim = verbatim_line_pattern(layout, dataset) if type(self)._record is _Writer._record else None
        self.verbatim_block = re.compile(f"(?>{verbatim}\n)*") if verbatim else None
        self.convert_verbatim = _verbatim_converter(layout, dataset, numbered)
        self.rows_read = 0
        self.rows_valid = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.pending: list[tuple[int, str]] = []  # (number, line) of a record whose quoted field is open
        self.pending_characters = 0
        self.again: collections.deque[tuple[int, str]] = collections.deque()  # lines to read again
        self.spanning: list[int] = []  # record numbers of records that span lines, ascending
        self.shift: list[int] = [0]  # shift[i]: extra lines of the records spanning[:i]
        self.header_shift: int | None = None  # lines the header spans beyond one, from the first piece
        self.open_at_end = False  # a quoted field was still open at the end of the file

    def line_number(self, record_number: int) -> int:
        """The file line on which the record numbered `record_number` (from 2) starts."""
        shift = self.shift[bisect.bisect_left(self.spanning, record_number)]
        return record_number + (self.header_shift or 0) + shift

    def lines_of(self, record_number: int) -> int:
        """How many lines of the file the record numbered `record_number` spans."""
        index = bisect.bisect_left(self.spanning, record_number)
        if index < len(self.spanning) and self.spanning[index] == record_number:
            return 1 + self.shift[index + 1] - self.shift[index]
        return 1

    def feed(self, piece: Block | LongLine) -> str:
        """The COPY records of one piece of the file (records still open wait for the next)."""
        if self.header_shift is None:  # the first piece starts on the first line after the header
            self.header_shift = (piece.number if isinstance(piece, LongLine) else piece.first) - 2
        if isinstance(piece, LongLine):
            return self.long_line(piece)
        return self.records(piece.first, piece.text)

    def records(self, first: int, text: str) -> str:
        """The COPY records of whole lines `text` whose first line is line `first`."""
        quoted = '"' in text
        if not self.pending and not quoted and self.verbatim_block is not None and self.verbatim_block.fullmatch(text):
            return self._plain(text.split("\n")[:-1], self.convert_verbatim)
        block = self.plain_block if quoted else self.unquoted_block
        if not self.pending and block is not None and block.fullmatch(text):
            if quoted:
                text = text.replace('"', "")
            return self._plain(text.split("\n")[:-1])
        return self._read(enumerate(text.split("\n")[:-1], start=first))

    def long_line(self, piece: LongLine) -> str:
        """The record of a line too long to read: rejected, its first characters kept."""
        out = [self._give_back_all()]
        customer_id = id_in_prefix(piece.head, self.layout, self.dataset)
        self._emit(piece.number, piece.raw_text, ParsedLine(customer_id, None, piece.reason, LONG_LINE_PATTERN), out)
        return "".join(out)

    def finish(self) -> str:
        """The records of lines still waiting at the end of the file (an open quote never closed)."""
        # lines appended to the file could close that quote: the file cannot start a longer one
        self.open_at_end = bool(self.pending)
        return self._give_back_all()

    def _give_back_all(self) -> str:
        out = []
        while self.pending:  # each round rejects one line: it ends
            self._give_back(out)
            out.append(self._read(()))
        return "".join(out)

    def _plain(self, lines: list[str], convert=None) -> str:
        """The records of plain lines (by `convert`, default the plain converter)."""
        if convert is None and any('"' in line for line in lines):
            lines = [line.replace('"', "") for line in lines]
        start = self.rows_read + 2
        self.rows_read += len(lines)
        self.rows_valid += len(lines)
        return (convert or self.convert)(lines, self.tail, start)

    def _read(self, numbered: Iterable[tuple[int, str]]) -> str:
        out: list[str] = []
        run: list[str] = []  # consecutive plain lines, converted together
        numbered = iter(numbered)
        while True:
            if self.again:
                number, line = self.again.popleft()
            else:
                item = next(numbered, None)
                if item is None:
                    break
                number, line = item
            if self.pending:
                if self.pending_characters + 1 + len(line) > MAX_LINE_CHARACTERS:
                    self.again.appendleft((number, line))
                    self._give_back(out)
                    continue
                self.pending.append((number, line))
                self.pending_characters += 1 + len(line)
                if line.count('"') % 2:  # the quotes balance: the record may be complete
                    self._close(out)
                continue
            if self.plain_line is not None and self.plain_line.fullmatch(line):
                run.append(line)
                continue
            if run:
                out.append(self._plain(run))
                run = []
            if line.count('"') % 2:
                self.pending = [(number, line)]
                self.pending_characters = len(line)
                continue
            self._emit(number, line, parse_line(line, self.layout, self.dataset), out)
        if run:
            out.append(self._plain(run))
        return "".join(out)

    def _close(self, out: list[str]) -> None:
        """A record whose quotes balance again: one record if it is well formed (RFC 4180: a
        quoted field's closing quote ends the field) and has the header's number of fields."""
        text = "\n".join(line for _, line in self.pending)
        try:
            fields = next(csv.reader([text], delimiter=self.layout.delimiter, skipinitialspace=True, strict=True))
        except csv.Error:  # stray quotes, say, whose lines do not make one record
            fields = None
        if fields is None or len(fields) != self.layout.n_fields:
            self._give_back(out)
            return
        number, lines = self.pending[0][0], len(self.pending)
        self.pending = []
        self._emit(number, text, parse_line(text, self.layout, self.dataset), out, lines)

    def _give_back(self, out: list[str]) -> None:
        """Reject the first line of the open record; read the lines after it again."""
        (number, line), *rest = self.pending
        self.pending = []
        self.again.extendleft(reversed(rest))
        customer_id = id_in_prefix(line, self.layout, self.dataset)
        self._emit(number, line, ParsedLine(customer_id, None, UNBALANCED_QUOTE, UNBALANCED_QUOTE), out)

    def _emit(self, number: int, raw_text: str, parsed: ParsedLine, out: list[str], lines: int = 1) -> None:
        if lines > 1:
            self.spanning.append(self.rows_read + 2)
            self.shift.append(self.shift[-1] + lines - 1)
        self.rows_read += 1
        prefix = f"{self.rows_read + 1}," if self.numbered else ""
        if parsed.reason is None:
            try:
                record = self._record(parsed)
            except RowRejected as rejected:
                parsed = ParsedLine(parsed.customer_id, None, rejected.reason, rejected.pattern)
            else:
                out.append(prefix + record + self.tail)
                self.rows_valid += 1
                return
        self.reasons[parsed.pattern or parsed.reason] += 1
        record = self.reject(number, parsed.customer_id, raw_text, parsed.reason)
        if record:
            out.append(prefix + record)


    def _record(self, parsed: ParsedLine) -> str:
        """The COPY fields of a record the row rules accepted: `id,"{values}"` (`array_literal`). A subclass may
        check more and raise RowRejected (the record is then rejected with that reason)."""
        return _csv_quoted(parsed.customer_id) + "," + _csv_quoted(array_literal(parsed.values))


def _copy_statement(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.SQL(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def _stream(connection: Connection, source: _Source, statement, writer: _Writer, *, expect: str) -> None:
    """COPY every piece of the file through `writer`; check that the server took one row per
    `expect`ed record."""
    raw_connection = connection.connection.driver_connection
    try:
        with raw_connection.cursor() as cursor:
            with cursor.copy(statement) as copy:
                for piece in source.blocks:
                    copy.write(writer.feed(piece))
                copy.write(writer.finish())
            copied = cursor.rowcount
    finally:
        source.progress.close()
    if writer.rows_read == 0:
        raise ImportRefused(f"{source.path}: the file has a header but no customer lines")
    expected = writer.rows_valid if expect == "valid" else writer.rows_read
    if copied != expected:  # a bug, never bad input: refuse rather than lose lines
        raise RuntimeError(f"{source.path}: {expected} {expect} lines but COPY took {copied} rows")
