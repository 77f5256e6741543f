"""Data lines into COPY records: plain blocks by the fast path, other lines by the row rules."""

from __future__ import annotations

import collections
import re

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation.dataset import Dataset
from segmentation.errors import ImportRefused
from segmentation.ingest.plain import _converter, plain_line_pattern
from segmentation.ingest.rules import _LONE_SURROGATE, ColumnLayout, parse_line
from segmentation.ingest.source import _Source


def _array_literal(values: tuple[str | None, ...]) -> str:
    """An array literal of text values as PostgreSQL reads it (every element quoted)."""
    return "{" + ",".join(
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values
    ) + "}"


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
    """Turns data lines into COPY (CSV) records `id,"{values}"` + tail; rejected lines go to `reject`.

    A block whose every line is plain is checked by one regular expression and converted by
    the generated `_converter`; other blocks are read line by line (plain lines still take the
    converter, the others `parse_line`). `reject(number, customer_id, line, reason)` returns
    the record to send for a rejected line, if any. `reasons` counts reject patterns.
    """

    def __init__(self, layout: ColumnLayout, dataset: Dataset, tail: str, reject) -> None:
        self.layout = layout
        self.dataset = dataset
        self.tail = tail + "\n"
        self.reject = reject
        plain = plain_line_pattern(layout, dataset)
        # atomic groups: a line that matched is never re-tried (its match must end at its own newline)
        self.plain_block = re.compile(f"(?>{plain}\n)*") if plain else None
        self.plain_line = re.compile(plain) if plain else None
        self.convert = _converter(layout, dataset)
        self.rows_read = 0
        self.rows_valid = 0
        self.reasons: collections.Counter[str] = collections.Counter()

    def _plain(self, lines: list[str]) -> str:
        if any('"' in line for line in lines):
            lines = [line.replace('"', "") for line in lines]
        self.rows_valid += len(lines)
        return self.convert(lines, self.tail)

    def records(self, first: int, text: str) -> str:
        n_lines = text.count("\n")
        self.rows_read += n_lines
        if self.plain_block is not None and self.plain_block.fullmatch(text):
            self.rows_valid += n_lines
            if '"' in text:
                text = text.replace('"', "")
            lines = text.split("\n")
            lines.pop()
            return self.convert(lines, self.tail)
        records = []
        run: list[str] = []  # consecutive plain lines, converted together
        for number, line in enumerate(text.split("\n")[:-1], start=first):
            if self.plain_line is not None and self.plain_line.fullmatch(line):
                run.append(line)
                continue
            if run:
                records.append(self._plain(run))
                run = []
            parsed = parse_line(line, self.layout, self.dataset)
            if parsed.reason is None:
                records.append(
                    _csv_quoted(parsed.customer_id) + "," + _csv_quoted(_array_literal(parsed.values)) + self.tail
                )
                self.rows_valid += 1
            else:
                self.reasons[parsed.pattern or parsed.reason] += 1
                record = self.reject(number, parsed.customer_id, line, parsed.reason)
                if record:
                    records.append(record)
        if run:
            records.append(self._plain(run))
        return "".join(records)


def _copy_statement(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.SQL(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def _stream(connection: Connection, source: _Source, statement, writer: _Writer, *, expect: str) -> None:
    """COPY every block through `writer`; check that the server took one row per `expect`ed line."""
    raw_connection = connection.connection.driver_connection
    try:
        with raw_connection.cursor() as cursor:
            with cursor.copy(statement) as copy:
                for first, text in source.blocks:
                    copy.write(writer.records(first, text))
            copied = cursor.rowcount
    finally:
        source.progress.close()
    if writer.rows_read == 0:
        raise ImportRefused(f"{source.path}: the file has a header but no customer lines")
    expected = writer.rows_valid if expect == "valid" else writer.rows_read
    if copied != expected:  # a bug, never bad input: refuse rather than lose lines
        raise RuntimeError(f"{source.path}: {expected} {expect} lines but COPY took {copied} rows")
