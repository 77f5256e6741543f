"""Import a customer CSV described by the data-set declaration into `segmentation.customers`.

Grain: one input line. Every data line ends up inserted, updated, unchanged or in
`import_rejects` (line number, raw text, reason), and the batch counts add up.

The declaration (`segmentation.dataset.Dataset`) says which header is the customer id and
which columns to keep, with their types and ranges. Each customer is stored as its id (text)
and `attributes`, the validated values as text in declaration order (see `parse_value`).

The file is streamed in ~1 MiB blocks through one COPY (CSV format); memory stays bounded by
the block size. All row rules are applied in Python, in one of two ways that store exactly
the same thing:

- a block whose lines are all plain (`plain_line_pattern`: the right number of fields, each
  value already valid, within its range and in a spelling whose stored form is known) is
  checked by one regular expression and rewritten into COPY records by one generated list
  comprehension (`_converter`), with no per-value Python logic;
- any other block is read line by line (`parse_line`), through the csv module when the line
  has quotes, and every value is checked and normalised by `parse_value`.

Into an empty `customers` table the records are copied straight in (`_first_load`): the
COPY itself is the whole load. Otherwise every line goes into a temporary staging table, and
duplicates, the merge into `customers`, deactivation and the counts are done by PostgreSQL in
set operations (`_staged_load`). No value is ever cast in SQL, so no value can fail there.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import decimal
import functools
import hashlib
import json
import logging
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection, Engine

from segmentation import db
from segmentation.dataset import BOOLEAN_WORDS, MALL, Column, Dataset, normalise_header
from segmentation.errors import ImportRefused, SegmentationError
from segmentation.settings import Settings

__all__ = [
    "ImportResult", "ImportRefused", "RowRejected", "ColumnLayout", "ParsedLine", "ensure_dataset", "import_file",
    "load_file", "map_header", "normalise_header", "parse_customer_id", "parse_line", "parse_value",
    "plain_line_pattern", "reason_pattern",
]

log = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 20
STAGE_TEMP_BUFFERS = "1GB"  # local buffers of the staging table (memory of the server backend)
MERGE_WORK_MEM = "256MB"
IN_ORDER_CORRELATION = 0.95  # pg_stats.correlation of customer_id above which a table counts as in id order

MAX_ID_DIGITS = 18  # significant digits of a whole-number customer id
MAX_TEXT_ID_CHARACTERS = 200
MAX_WHOLE_DIGITS = 18  # digits of a whole-number value
MAX_NUMBER_CHARACTERS = 64
MAX_QUOTED_CHARACTERS = 40  # of a value quoted in a reason
MAX_HEADER_NAMES = 20  # header names listed when a column is missing
MAX_CATEGORY_NAMES = 20  # allowed values listed when a category is not one of them
#: integer and fraction digits of a number on the fast path (longer numbers take parse_line)
PLAIN_NUMBER_DIGITS = 28

_DIGITS = re.compile(r"[0-9]+")
_WHOLE = re.compile(r"[+-]?[0-9]{1,%d}" % MAX_WHOLE_DIGITS)
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_BOOLEAN_TEXT = "yes/no/true/false/1/0"
#: the placeholder of a value in `reason_pattern` (reasons grouped for `top_reasons`)
ELLIPSIS = "…"
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")

# --- the header ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """Where the id and each declared column sit in the file, and what else the file has.

    `positions` maps "customer_id" and each declared column name to its field index (the
    declared columns in declaration order).
    """

    delimiter: str
    n_fields: int
    positions: dict[str, int]
    ignored: tuple[str, ...]


def _quote(value: str) -> str:
    """`value` quoted for a message: its first 40 characters, and how many more there are."""
    if len(value) <= MAX_QUOTED_CHARACTERS:
        return repr(value)
    return f"{value[:MAX_QUOTED_CHARACTERS]!r}... ({len(value) - MAX_QUOTED_CHARACTERS} more characters)"


def map_header(
    header: list[str], dataset: Dataset = MALL, column_map: dict[str, str] | None = None, source: str = "file"
) -> ColumnLayout:
    """Match header names to the id and the declared columns; raise ImportRefused naming what is missing.

    A name matches after `normalise_header`: the id by `dataset.id_column` or its aliases, a
    declared column by its `source` or aliases; `column_map` (export header -> "customer_id"
    or a declared column name) comes first. Other columns are ignored (listed in `ignored`).
    """
    targets = ("customer_id", *dataset.names)
    user_map = {}
    for name, target in (column_map or {}).items():
        if target not in targets:
            raise ImportRefused(
                f"{source}: column_map maps {name!r} to {target!r}; expected one of {', '.join(targets)}"
            )
        user_map[normalise_header(name)] = target
    known: dict[str, str] = {}
    for spelling in (dataset.id_column, *dataset.id_aliases):
        known.setdefault(normalise_header(spelling), "customer_id")
    for column in dataset.columns:
        for spelling in (column.source, *column.aliases):
            known.setdefault(normalise_header(spelling), column.name)
    claimed = set(user_map.values())  # a mapped header replaces the declared one
    found: dict[str, int] = {}
    ignored = []
    for index, name in enumerate(header):
        key = normalise_header(name)
        target = user_map.get(key)
        if target is None and known.get(key) not in claimed:
            target = known.get(key)
        if target is None:
            ignored.append(name)
            continue
        if target in found:
            raise ImportRefused(
                f"{source} line 1: columns {_quote(header[found[target]])} and {_quote(name)} both map to {target}"
            )
        found[target] = index
    expected = {"customer_id": dataset.id_column, **{column.name: column.source for column in dataset.columns}}
    missing = [target for target in targets if target not in found]
    if missing:
        names = ", ".join(_quote(name) for name in header[:MAX_HEADER_NAMES])
        if len(header) > MAX_HEADER_NAMES:
            names += f" and {len(header) - MAX_HEADER_NAMES} more"
        raise ImportRefused(
            f"{source} line 1: header has no column for "
            + ", ".join(f"{target} ({_quote(expected[target])})" for target in missing)
            + f"; found {names or 'nothing'}. Rename the column or map it with the column_map setting"
        )
    positions = {target: found[target] for target in targets}
    return ColumnLayout(delimiter=",", n_fields=len(header), positions=positions, ignored=tuple(ignored))


# --- one value, one line ---------------------------------------------------------------------


class RowRejected(ValueError):
    """A value or line that cannot be loaded; the message is the reason stored with it.

    `pattern` is the reason with the value left out, for counting reasons together.
    """

    def __init__(self, reason: str, pattern: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pattern = pattern or reason


def reason_pattern(reason: str) -> str:
    """A reason with its quoted values replaced by '…' (for reasons not made by `RowRejected`)."""
    return _QUOTED.sub(f"'{ELLIPSIS}'", reason)


def _rejected(label: str, value: str, rest: str) -> RowRejected:
    return RowRejected(f"{label} {_quote(value)} {rest}", f"{label} '{ELLIPSIS}' {rest}")


def _clean(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value


def parse_customer_id(value: str, id_type: str = "whole") -> str:
    """The stored form of a (cleaned) customer id, or RowRejected.

    whole: digits, not zero, at most 18 significant digits, stored without leading zeros;
    text: non-empty, at most 200 characters, stored as given.
    """
    if value == "":
        raise RowRejected("customer id is empty")
    if id_type == "text":
        if len(value) > MAX_TEXT_ID_CHARACTERS:
            raise _rejected("customer id", value, f"is too long (at most {MAX_TEXT_ID_CHARACTERS} characters)")
        if "\x00" in value:
            raise _rejected("customer id", value, "contains a NUL character")
        return value
    if not _DIGITS.fullmatch(value):
        raise _rejected("customer id", value, "is not a positive whole number")
    significant = value.lstrip("0")
    if not significant:
        raise _rejected("customer id", value, "is not a positive whole number")
    if len(significant) > MAX_ID_DIGITS:
        raise _rejected("customer id", value, f"is too large (at most {MAX_ID_DIGITS} digits)")
    return significant


def _finite(bound: float | None) -> Decimal | None:
    if bound is None or not math.isfinite(bound):
        return None
    return Decimal(repr(float(bound)))


@functools.lru_cache(maxsize=256)
def _bounds(column: Column) -> tuple[Decimal | None, Decimal | None]:
    """The column's range as exact decimals of what the user wrote (repr of the float)."""
    return _finite(column.minimum), _finite(column.maximum)


def _bound_text(bound: Decimal) -> str:
    return str(int(bound)) if bound == bound.to_integral_value() else str(bound)


@functools.lru_cache(maxsize=256)
def _allowed_values(column: Column) -> str:
    values = list(column.values or ())
    text = ", ".join(values[:MAX_CATEGORY_NAMES])
    if len(values) > MAX_CATEGORY_NAMES:
        text += f" and {len(values) - MAX_CATEGORY_NAMES} more"
    return text


def _range_problem(column: Column, value: Decimal) -> str | None:
    low, high = _bounds(column)
    below = low is not None and value < low
    above = high is not None and value > high
    if not (below or above):
        return None
    if column.type == "whole" and low is not None and high is not None:
        return f"is outside {_bound_text(low)}..{_bound_text(high)}"
    return f"is below its minimum {_bound_text(low)}" if below else f"is above its maximum {_bound_text(high)}"


def parse_value(column: Column, value: str) -> str | None:
    """The stored text of one declared column's (cleaned) value; None for empty; or RowRejected.

    number: decimal, at most 64 characters, within range, stored as written without a
    leading '+'; whole: [+-] and 1..18 digits within range, stored as a plain integer;
    category: trimmed, one of `values` when declared (any case, or a value alias), stored in
    its canonical spelling; boolean: yes/no/true/false/1/0/y/n/t/f in any case, stored as
    'true' / 'false'.
    """
    if value == "":
        return None
    kind = column.type
    if kind == "number":
        if len(value) > MAX_NUMBER_CHARACTERS or not _DECIMAL.fullmatch(value):
            raise _rejected(column.label, value, "is not a number")
        problem = _range_problem(column, Decimal(value))
        if problem:
            raise _rejected(column.label, value, problem)
        return value[1:] if value[0] == "+" else value
    if kind == "whole":
        if not _WHOLE.fullmatch(value):
            raise _rejected(column.label, value, "is not a whole number")
        number = int(value)
        problem = _range_problem(column, Decimal(number))
        if problem:
            raise RowRejected(f"{column.label} {number} {problem}", f"{column.label} {ELLIPSIS} {problem}")
        return str(number)
    if kind == "boolean":
        meaning = BOOLEAN_WORDS.get(value.lower())
        if meaning is None:
            raise _rejected(column.label, value, f"is not {_BOOLEAN_TEXT}")
        return "true" if meaning else "false"
    # category
    if "\x00" in value:
        raise _rejected(column.label, value, "contains a NUL character")
    canonical = column.canonical_value(value)
    if canonical is None:
        raise _rejected(column.label, value, f"is not one of {_allowed_values(column)}")
    return canonical


class ParsedLine(NamedTuple):
    """What `parse_line` made of a line.

    `customer_id` is set even for a rejected line when its id could be read, so that a full
    export does not deactivate a customer whose line was merely invalid. `values` are the
    declared columns' stored texts (None: empty) of a valid line; `reason` and `pattern` those
    of a rejected one.
    """

    customer_id: str | None
    values: tuple[str | None, ...] | None
    reason: str | None = None
    pattern: str | None = None


def _split(line: str, delimiter: str) -> list[str]:
    if '"' not in line:
        return line.split(delimiter)
    if line.count('"') % 2:
        raise RowRejected("unbalanced double quote (a field's closing quote is missing)")
    try:
        return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
    except csv.Error as error:
        raise RowRejected(f"cannot split the line into fields ({error})", "cannot split the line into fields") from None


def parse_line(line: str, layout: ColumnLayout, dataset: Dataset = MALL) -> ParsedLine:
    """Check and normalise one data line (never raises for any text)."""
    if line.strip() == "":
        return ParsedLine(None, None, "empty line", "empty line")
    customer_id = None
    try:
        fields = _split(line, layout.delimiter)
        id_position = layout.positions["customer_id"]
        if len(fields) != layout.n_fields:
            if id_position < len(fields):  # most likely still the id: keeps its customer active
                with contextlib.suppress(RowRejected):
                    customer_id = parse_customer_id(_clean(fields[id_position]), dataset.id_type)
            raise RowRejected(f"{len(fields)} fields, expected {layout.n_fields}",
                              f"{ELLIPSIS} fields, expected {layout.n_fields}")
        customer_id = parse_customer_id(_clean(fields[id_position]), dataset.id_type)
        positions = layout.positions
        values = tuple(parse_value(column, _clean(fields[positions[column.name]])) for column in dataset.columns)
    except RowRejected as rejected:
        return ParsedLine(customer_id, None, rejected.reason, rejected.pattern)
    return ParsedLine(customer_id, values)


# --- the fast path: whole blocks of plain lines, checked by one regular expression ----------


def _same_length_range(low: str, high: str) -> str:
    """Regex of the decimal strings of one length from `low` to `high` (equal lengths)."""
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return low[0] + _same_length_range(low[1:], high[1:])
    rest = len(low) - 1
    first, last = int(low[0]), int(high[0])
    parts = []
    if low[1:] != "0" * rest:
        parts.append(low[0] + _same_length_range(low[1:], "9" * rest))
        first += 1
    upper = None
    if high[1:] != "9" * rest:
        upper = high[0] + _same_length_range("0" * rest, high[1:])
        last -= 1
    if first <= last:
        parts.append(f"[{first}-{last}][0-9]{{{rest}}}")
    if upper:
        parts.append(upper)
    return "(?:" + "|".join(parts) + ")"


def integer_range_pattern(low: int, high: int) -> str | None:
    """Regex of the integers from `low` to `high` (0 <= low) written without leading zeros; None if none."""
    if low > high:
        return None
    parts = []
    if low == 0:
        parts.append("0")
        low = 1
    full: list[int] = []  # lengths whose every number is in range: one part for all of them

    def flush() -> None:
        if full:
            parts.append(f"[1-9][0-9]{{{full[0] - 1},{full[-1] - 1}}}" if full[-1] > 1 else "[1-9]")
            full.clear()

    for length in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (length - 1))
        end = min(high, 10**length - 1)
        if start > end:
            continue
        if (start, end) == (10 ** (length - 1), 10**length - 1):
            full.append(length)
            continue
        flush()
        parts.append(_same_length_range(str(start), str(end)))
    flush()
    return "(?:" + "|".join(parts) + ")"


def _ceiling(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=decimal.ROUND_FLOOR))


def _magnitudes(least: Decimal | None, most: Decimal | None, digits: int, fraction: bool) -> str | None:
    """Regex of unsigned numbers (no leading zeros) whose value lies in [least, most] (None: open).

    With `fraction`, any decimals are allowed where the integer part is below `most`, and
    only zeros at `most` itself; values that need a closer look are left to `parse_line`.
    """
    largest = 10**digits - 1
    first = 0 if least is None or least <= 0 else _ceiling(least)
    any_fraction = r"(?:\.[0-9]{1,%d})?" % digits if fraction else ""
    zero_fraction = r"(?:\.0{1,%d})?" % digits if fraction else ""
    if most is None or most >= (largest + 1 if fraction else largest):
        body = integer_range_pattern(first, largest)
        return None if body is None else body + any_fraction
    last = _floor(most)
    parts = []
    if fraction:
        below = integer_range_pattern(first, last - 1)
        if below:
            parts.append(below + any_fraction)
        if first <= last:
            parts.append(str(last) + zero_fraction)
    else:
        whole = integer_range_pattern(first, last)
        if whole:
            parts.append(whole)
    return "(?:" + "|".join(parts) + ")" if parts else None


def _numeric_plain(column: Column) -> str:
    """Values of a number or whole column that are valid and already in their stored form."""
    low, high = _bounds(column)
    fraction = column.type == "number"
    digits = PLAIN_NUMBER_DIGITS if fraction else MAX_WHOLE_DIGITS
    parts = []
    if high is None or high >= 0:
        positive = _magnitudes(low, high, digits, fraction)
        if positive:
            parts.append(positive)
    if low is None or low < 0:
        # -x lies in [low, high] when x lies in [-high, -low]; whole numbers are never "-0"
        least = None if high is None else -high
        if not fraction:
            least = Decimal(1) if least is None or least < 1 else least
        negative = _magnitudes(least, None if low is None else -low, digits, fraction)
        if negative:
            parts.append("-" + negative)
    return "(?:" + "|".join(parts) + ")?" if parts else ""


def _text_classes(delimiter: str) -> tuple[str, str]:
    """(inner, outer) character classes of text that needs no quoting in a CSV field or an
    array literal: no delimiter, comma, quote, brace, backslash or line break; the first and
    last character are no space and no single quote (`_clean` would strip them)."""
    forbidden = re.escape(delimiter) + r',"{}\\\n\r\x00'
    return f"[^{forbidden}]", rf"[^{forbidden}'\s]"


def _spellings(column: Column) -> dict[str, str]:
    """Spellings of a category or boolean on the fast path -> stored text (array-literal safe)."""
    if column.type == "boolean":
        words = {word: "true" if meaning else "false" for word, meaning in BOOLEAN_WORDS.items()}
        return {form: stored for word, stored in words.items() for form in (word, word.upper(), word.capitalize())}
    candidates = [*(column.values or ()), *(spelling for spelling, _ in column.value_aliases)]
    safe = re.compile(r"[^,\"{}\\\s'\x00](?:[^,\"{}\\\n\r\x00]*[^,\"{}\\\s'\x00])?")
    spellings = {}
    for candidate in candidates:
        for form in (candidate, candidate.lower(), candidate.upper(), candidate.capitalize(), candidate.title()):
            stored = column.canonical_value(form)
            if (stored is not None and safe.fullmatch(form) and safe.fullmatch(stored)
                    and form.lower() != "null" and stored.lower() != "null"):
                spellings[form] = stored
    return spellings


def _value_plain(column: Column, delimiter: str) -> str:
    """Regex of one declared column's plain values (empty included)."""
    if column.type in ("number", "whole"):
        return _numeric_plain(column)
    if column.type == "boolean" or column.values is not None:
        spellings = sorted(_spellings(column), key=lambda form: (-len(form), form))
        spellings = [form for form in spellings if delimiter not in form]
        return "(?:" + "|".join(map(re.escape, spellings)) + ")?" if spellings else ""
    inner, outer = _text_classes(delimiter)
    end = re.escape(delimiter) + r'"\n'
    return rf"(?!(?i:null)(?![^{end}])){outer}(?:{inner}*{outer})?|"


def _id_plain(dataset: Dataset, delimiter: str) -> str:
    if dataset.id_type == "whole":
        return r"0*[1-9][0-9]{0,%d}" % (MAX_ID_DIGITS - 1)
    inner, outer = _text_classes(delimiter)
    return rf"{outer}(?:{inner}{{0,{MAX_TEXT_ID_CHARACTERS - 2}}}{outer})?"


def plain_line_pattern(layout: ColumnLayout, dataset: Dataset = MALL) -> str | None:
    """A regular expression (without line end) of the layout's plain lines, or None.

    A plain line has the right number of fields, no quote but those around a whole field, and
    every value valid and in a spelling `_converter` knows how to store, so such lines can be
    rewritten without checking each value. Any line it does not match goes to `parse_line`.
    """
    delimiter = layout.delimiter
    by_position = {position: name for name, position in layout.positions.items()}
    columns = {column.name: column for column in dataset.columns}
    fields = []
    for index in range(layout.n_fields):
        name = by_position.get(index)
        if name == "customer_id":
            value = _id_plain(dataset, delimiter)
            fields.append(f'(?:{value}|"{value}")')
            continue
        if name is None:  # an ignored column: anything without quotes or delimiters
            value = f'[^{re.escape(delimiter)}"\\n\\r]*'
        else:
            value = _value_plain(columns[name], delimiter)
        fields.append(f'(?:{value}|"(?:{value})")' if value else '(?:|"")')
    return re.escape(delimiter).join(fields)


def _converter(layout: ColumnLayout, dataset: Dataset) -> Callable[[list[str], str], str]:
    """A function turning plain lines (quotes removed) into COPY records: id,"{values}" + tail.

    Generated from the layout as one list comprehension: per line one split, and per value
    at most one dictionary look-up (categories, booleans) or `or 'NULL'` (empty numbers).
    The generated code holds only field indexes; spellings are looked up in dictionaries.
    """
    namespace: dict[str, object] = {"d": layout.delimiter, "N": "NULL", "Z": "0"}
    id_field = f"f[{layout.positions['customer_id']}]"
    parts = []
    for index, column in enumerate(dataset.columns):
        field = f"f[{layout.positions[column.name]}]"
        if column.type in ("number", "whole"):
            parts.append(f"{{{field} or N}}")
        elif column.type == "boolean" or column.values is not None:
            namespace[f"m{index}"] = {"": "NULL", **_spellings(column)}
            parts.append(f"{{m{index}[{field}]}}")
        else:
            parts.append(f"{{{field} or N}}")
    record = ("{%s.lstrip(Z)}" % id_field if dataset.id_type == "whole" else "{%s}" % id_field)
    record += ',"{{' + ",".join(parts) + '}}"{tail}'
    code = (
        "def convert(lines, tail):\n"
        f"    return ''.join([f{record!r} for line in lines for f in [line.split(d)]])\n"
    )
    exec(compile(code, "<segmentation.ingest converter>", "exec"), namespace)  # noqa: S102 - code of indexes only
    return namespace["convert"]  # type: ignore[return-value]


def _array_literal(values: tuple[str | None, ...]) -> str:
    """An array literal of text values as PostgreSQL reads it (every element quoted)."""
    return "{" + ",".join(
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values
    ) + "}"


def _csv_quoted(value: str) -> str:
    """A CSV field that COPY reads back as exactly `value` (never NULL); NUL bytes become U+FFFD."""
    return '"' + value.replace('"', '""').replace("\x00", "\ufffd") + '"'


# --- the file ----------------------------------------------------------------------------


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
    #: "first load" (COPY straight into an empty customers table) or "merge" (staging table)
    method: str = "merge"
    #: segmentation.datasets row of the declaration the file was read under
    dataset_id: int | None = None
    #: rows_rejected / rows_read
    reject_share: float = 0.0
    #: the three most common reasons (values replaced by '…') with their counts, most common first
    top_reasons: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: header names that are neither the id nor a declared column
    ignored_columns: tuple[str, ...] = ()
    #: a full export rejected more than max_reject_share: nobody was marked inactive
    deactivation_skipped: bool = False

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
    """The `segmentation.datasets` id of `dataset` (by its fingerprint), inserting it when new."""
    fingerprint = dataset.fingerprint()
    found = connection.execute(
        sa.text("select dataset_id from segmentation.datasets where fingerprint = :fingerprint"),
        {"fingerprint": fingerprint},
    ).scalar()
    if found is not None:
        return found
    connection.execute(
        sa.text(
            "insert into segmentation.datasets (fingerprint, declaration) values (:fingerprint, cast(:declaration as jsonb))"
            " on conflict (fingerprint) do nothing"
        ),
        {"fingerprint": fingerprint, "declaration": json.dumps(dataset.describe())},
    )
    return connection.execute(
        sa.text("select dataset_id from segmentation.datasets where fingerprint = :fingerprint"),
        {"fingerprint": fingerprint},
    ).scalar_one()


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


# line_number counts the stage's records: one per input line, in file order, in one COPY
STAGE_TABLE = """
create temporary table import_stage (
    line_number bigint generated by default as identity (start with 2),
    customer_id text collate "C",
    attributes text[],
    raw_line text,
    reason text
) on commit drop
"""


def begin_batch(connection: Connection, source_name: str, export_mode: str) -> int:
    """Insert a `running` batch row and return its id (commit it before the data transaction)."""
    return connection.execute(
        sa.text(
            "insert into segmentation.import_batches (source_name, export_mode)"
            " values (:source_name, :export_mode) returning batch_id"
        ),
        {"source_name": source_name, "export_mode": export_mode},
    ).scalar_one()


def fail_batch(connection: Connection, batch_id: int, message: str) -> None:
    connection.execute(
        sa.text(
            "update segmentation.import_batches set status = 'failed', finished_at = clock_timestamp(),"
            " error = :error where batch_id = :batch_id"
        ),
        {"batch_id": batch_id, "error": message},
    )


def import_file(engine: Engine, path: Path, settings: Settings) -> ImportResult:
    """Import one CSV under `settings.declaration`: all its rows or none, the batch row recording the outcome."""
    with engine.begin() as connection:
        batch_id = begin_batch(connection, path.name, settings.export_mode)
    try:
        with engine.begin() as connection:
            result = load_file(
                connection,
                path,
                batch_id,
                dataset=settings.declaration,
                column_map=settings.column_map,
                export_mode=settings.export_mode,
                max_reject_share=settings.max_reject_share,
            )
    except BaseException as error:
        message = str(error) if isinstance(error, SegmentationError) else f"{type(error).__name__}: {error}"
        try:
            with engine.begin() as connection:
                fail_batch(connection, batch_id, db.redact(" ".join(message.split())))
        except Exception:  # the server is gone: the next run marks the batch abandoned
            log.warning("import batch %d: could not record its failure", batch_id)
        raise
    return result


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


class _DuplicateInFile(Exception):
    """A customer id repeats in the file: the first-load COPY cannot decide which line wins."""


def load_file(
    connection: Connection,
    path: Path,
    batch_id: int,
    *,
    dataset: Dataset | None = None,
    column_map: dict[str, str] | None = None,
    export_mode: str = "full",
    max_reject_share: float = 0.05,
) -> ImportResult:
    """Stream `path`, read under `dataset` (default: the mall's), into `customers` inside the caller's transaction.

    Into an empty `customers` table the valid lines are copied straight in ("first load");
    otherwise, or when an id repeats in the file, they go through a staging table and a
    set-based merge ("merge"). In a full export customers missing from the file become
    inactive, unless more than `max_reject_share` of the lines were rejected (then nobody
    is). Raises ImportRefused (and loads nothing, once the caller rolls back) for a missing
    or unreadable file, an empty file, a bad header or invalid UTF-8.
    """
    started = time.monotonic()
    dataset = dataset or MALL
    column_map = column_map or {}
    dataset_id = ensure_dataset(connection, dataset)
    counts = None
    empty = connection.execute(sa.text("select not exists (select 1 from segmentation.customers)")).scalar_one()
    if empty:
        try:
            with connection.begin_nested():
                counts, source, reasons = _first_load(connection, path, batch_id, dataset, dataset_id, column_map)
        except _DuplicateInFile:
            log.info("%s: a customer id repeats in the file; loading through the staging table", path)
    if counts is None:
        counts, source, reasons = _staged_load(
            connection, path, batch_id, dataset, dataset_id, column_map, export_mode, max_reject_share
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
    )
    # a bug, never bad input: refuse rather than lose lines
    accounted = result.rows_inserted + result.rows_updated + result.rows_unchanged + result.rows_rejected
    if accounted != result.rows_read:
        raise RuntimeError(f"{path}: {result.rows_read} lines read but {accounted} accounted for")
    if sum(reasons.values()) != result.rows_rejected:
        raise RuntimeError(f"{path}: {result.rows_rejected} lines rejected but {sum(reasons.values())} reasons counted")
    connection.execute(
        sa.text(
            """
            update segmentation.import_batches set
                status = 'succeeded', finished_at = clock_timestamp(), source_sha256 = :sha256,
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


@contextlib.contextmanager
def _step(label: str) -> Iterator[None]:
    """Log how long a step of the load took (debug level)."""
    started = time.monotonic()
    yield
    log.debug("import: %s (%.2f s)", label, time.monotonic() - started)


def _open(path: Path, dataset: Dataset, column_map: dict[str, str]) -> _Source:
    source = _Source.open(path, dataset, column_map)
    if source.layout.ignored:
        log.info("%s: ignoring columns that are not declared: %s", path,
                 ", ".join(_quote(name) for name in source.layout.ignored))
    return source


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


def _first_load(
    connection: Connection, path: Path, batch_id: int, dataset: Dataset, dataset_id: int, column_map: dict[str, str]
):
    """COPY valid lines straight into the empty `customers`; rejects go to a spool file first."""
    source = _open(path, dataset, column_map)
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        n_rejected = 0

        def reject(number: int, customer_id: str | None, line: str, reason: str) -> None:
            nonlocal n_rejected
            n_rejected += 1
            spool.write(f"{batch_id},{number},{_csv_quoted(line)},{_csv_quoted(reason)}\n")

        writer = _Writer(source.layout, dataset, f",{batch_id},{batch_id},{dataset_id}", reject)
        statement = _copy_statement(
            "segmentation.customers", ("customer_id", "attributes", "first_batch_id", "last_batch_id", "dataset_id")
        )
        try:
            _stream(connection, source, statement, writer, expect="valid")
        except psycopg.errors.UniqueViolation:
            raise _DuplicateInFile from None
        if n_rejected:
            spool.seek(0)
            raw_connection = connection.connection.driver_connection
            with raw_connection.cursor() as cursor, cursor.copy(
                "copy segmentation.import_rejects (batch_id, line_number, raw_line, reason) from stdin"
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
    }, source, writer.reasons


def _staged_load(
    connection: Connection,
    path: Path,
    batch_id: int,
    dataset: Dataset,
    dataset_id: int,
    column_map: dict[str, str],
    export_mode: str,
    max_reject_share: float,
):
    """COPY every line into a staging table (rejects with their reason), then merge by set operations."""
    source = _open(path, dataset, column_map)
    # Local buffers for the staging table (only settable before a session's first temporary
    # table, hence the savepoint); the default 8 MB makes a million-row stage spill to disk.
    with contextlib.suppress(sa.exc.DBAPIError), connection.begin_nested():
        connection.exec_driver_sql(f"set local temp_buffers = '{STAGE_TEMP_BUFFERS}'")
    # Hash joins and the duplicate check over millions of staged rows spill to disk at the
    # default 4 MB; this transaction is the only heavy one while the run lock is held.
    connection.exec_driver_sql(f"set local work_mem = '{MERGE_WORK_MEM}'")
    connection.exec_driver_sql(STAGE_TABLE)

    def reject(number: int, customer_id: str | None, line: str, reason: str) -> str:
        known = "" if customer_id is None else _csv_quoted(customer_id)
        return f"{known},,{_csv_quoted(line)},{_csv_quoted(reason)}\n"

    writer = _Writer(source.layout, dataset, ",,", reject)
    statement = _copy_statement("import_stage", ("customer_id", "attributes", "raw_line", "reason"))
    with _step("copy into the stage"):
        _stream(connection, source, statement, writer, expect="read")
    with _step("duplicate ids"):
        n_superseded, unique = _reject_superseded(connection, path, batch_id)
    reasons = writer.reasons.copy()
    if n_superseded:
        reasons[f"customer id {ELLIPSIS} appears again on line {ELLIPSIS}, which replaces this line"] += n_superseded
    last_line = connection.execute(
        sa.text("select currval(pg_get_serial_sequence('import_stage', 'line_number'))")
    ).scalar_one()
    if last_line != writer.rows_read + 1:  # one record per line, numbered in file order
        raise RuntimeError(f"{path}: {writer.rows_read} lines read but the stage ends at line {last_line}")
    valid = writer.rows_valid - n_superseded
    rejected = writer.rows_read - valid
    deactivate = export_mode == "full"
    if deactivate and rejected > max_reject_share * writer.rows_read:
        log.warning(
            "%s: %d of %d lines (%.1f%%) were rejected, more than max_reject_share (%.1f%%): this full export"
            " marks nobody inactive; fix the file and import it again",
            path, rejected, writer.rows_read, 100 * rejected / writer.rows_read, 100 * max_reject_share,
        )
        deactivate = False
    counts = _merge(
        connection, batch_id, dataset_id, deactivate=deactivate, merge_join=unique, any_rejects=rejected > 0
    )
    return {
        **counts,
        "method": "merge",
        "read": writer.rows_read,
        "unchanged": valid - counts["inserted"] - counts["updated"],
        "rejected": rejected,
        "deactivation_skipped": export_mode == "full" and not deactivate,
    }, source, reasons


def _reject_superseded(connection: Connection, path: Path, batch_id: int) -> tuple[int, bool]:
    """The same id twice in a file: the later valid line wins, earlier ones are rejected.

    Returns (lines rejected as superseded, whether the stage has a unique index on the id).
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
        pass  # some id repeats: find which lines lost
    superseded = connection.execute(
        sa.text(
            """
            with valid as (
                select line_number, max(line_number) over (partition by customer_id) as winner
                from import_stage
                where reason is null
            )
            select line_number, winner from valid where line_number <> winner order by line_number
            """
        )
    ).all()
    if not superseded:
        return 0, False
    # Re-read only those lines from the file (duplicates are rare) to keep them verbatim.
    wanted = dict(superseded)
    raw_lines: dict[int, str] = {}
    for number, text in _numbered_lines(path, hashlib.sha256(), lambda *_: None):
        if number in wanted:
            raw_lines[number] = text
            if len(raw_lines) == len(wanted):
                break
    connection.execute(
        sa.text(
            """
            update import_stage as stage
            set raw_line = loser.raw_line,
                reason = 'customer id ' || stage.customer_id || ' appears again on line '
                    || loser.winner || ', which replaces this line'
            from unnest(cast(:numbers as bigint[]), cast(:winners as bigint[]), cast(:raw_lines as text[]))
                as loser (line_number, winner, raw_line)
            where stage.line_number = loser.line_number
            """
        ),
        {
            "numbers": [number for number, _ in superseded],
            "winners": [winner for _, winner in superseded],
            "raw_lines": [raw_lines[number].replace("\x00", "\ufffd") for number, _ in superseded],
        },
    )
    return len(superseded), False


def _both_in_id_order(connection: Connection) -> bool:
    """Whether the statistics say the stage and `customers` are both stored in id order."""
    connection.exec_driver_sql("analyze segmentation.customers")
    correlations = connection.execute(
        sa.text(
            """
            select stats.tablename, stats.correlation
            from pg_stats as stats
            where stats.attname = 'customer_id'
            and ((stats.schemaname = 'segmentation' and stats.tablename = 'customers')
                 or (stats.schemaname = (select nspname from pg_namespace where oid = pg_my_temp_schema())
                     and stats.tablename = 'import_stage'))
            """
        )
    ).all()
    return len(correlations) == 2 and all(
        correlation is not None and correlation > IN_ORDER_CORRELATION for _, correlation in correlations
    )


def _merge(
    connection: Connection, batch_id: int, dataset_id: int, *, deactivate: bool, merge_join: bool, any_rejects: bool
) -> dict[str, int]:
    """Store the stage's rejects, update changed customers, insert new ones, deactivate missing ones.

    A customer changed when its attributes, its declaration (dataset_id) or is_active differ.
    One join of the stage with `customers` finds what changed or is new (into a small table
    when little changed), so the two big tables are matched once. When both tables are stored
    in id order and the stage has its unique id index, a merge join of the two id indexes
    does that much faster than the hash join the planner would choose; in any other order the
    merge join reads pages at random and the planner's choice stands.

    With `deactivate` (a full export), active customers with no line in the file become
    inactive; a line that was rejected but whose id could be read keeps its customer active.
    """
    if any_rejects:  # else skip a scan of the whole stage
        with _step("rejects"):
            connection.execute(
                sa.text(
                    "insert into segmentation.import_rejects (batch_id, line_number, raw_line, reason)"
                    " select :batch_id, line_number, raw_line, reason from import_stage where reason is not null"
                ),
                {"batch_id": batch_id},
            )
    with _step("analyze"):
        connection.exec_driver_sql("analyze import_stage")
        merge_join = merge_join and _both_in_id_order(connection)
    log.debug("matching the stage with customers by %s", "a merge join of the id indexes" if merge_join else "the planner's choice")
    # With `deactivate`, a full join finds the customers with no line in the file in the same
    # pass (any line with a readable id counts, rejected or not), instead of a second join.
    join, gone = (
        (sql.SQL("full join"), sql.SQL("or (stage.line_number is null and current.is_active)"))
        if deactivate else (sql.SQL("left join"), sql.SQL(""))
    )
    with _step("changed, new and missing customers"):
        if merge_join:
            connection.exec_driver_sql("set local enable_hashjoin = off")
            connection.exec_driver_sql("set local enable_nestloop = off")
        statement = sql.SQL(
            """
            create temporary table import_changes on commit drop as
            select coalesce(stage.customer_id, current.customer_id) as customer_id, stage.attributes,
                   current.customer_id is null as is_new, stage.line_number is null as is_gone
            from import_stage as stage
            {join} segmentation.customers as current on current.customer_id = stage.customer_id
            where (stage.reason is null
                   and (current.customer_id is null
                        or (current.attributes, current.dataset_id, current.is_active)
                           is distinct from (stage.attributes, {dataset_id}, true)))
            {gone}
            """
        ).format(join=join, gone=gone, dataset_id=sql.Literal(dataset_id))
        connection.exec_driver_sql(statement.as_string(connection.connection.driver_connection))
        if merge_join:
            connection.exec_driver_sql("set local enable_hashjoin to default")
            connection.exec_driver_sql("set local enable_nestloop to default")
        connection.exec_driver_sql("analyze import_changes")
    with _step("update, insert, deactivate"):
        updated = connection.execute(
            sa.text(
                """
                update segmentation.customers as current
                set attributes = changed.attributes,
                    dataset_id = :dataset_id,
                    is_active = true,
                    last_batch_id = :batch_id,
                    updated_at = now()
                from import_changes as changed
                where not changed.is_new and not changed.is_gone and changed.customer_id = current.customer_id
                """
            ),
            {"batch_id": batch_id, "dataset_id": dataset_id},
        ).rowcount
        inserted = connection.execute(
            sa.text(
                """
                insert into segmentation.customers (customer_id, attributes, dataset_id, first_batch_id, last_batch_id)
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
                    """
                    update segmentation.customers as current
                    set is_active = false, last_batch_id = :batch_id, updated_at = now()
                    from import_changes as changed
                    where changed.is_gone and changed.customer_id = current.customer_id
                    """
                ),
                {"batch_id": batch_id},
            ).rowcount
    return {"inserted": inserted, "updated": updated, "deactivated": deactivated}
