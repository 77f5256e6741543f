"""Row rules of the import: the header's mapping, and each value and line checked and normalised.

Pure functions, no I/O. `map_header` places the id and the declared columns in the file;
`parse_line` turns one data line into the stored id and the declared columns' stored texts
(`parse_value`, `parse_customer_id`), or a reason to reject it (`RowRejected`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import math
import re
from decimal import Decimal
from typing import NamedTuple

from segmentation.dataset import BOOLEAN_WORDS, MALL, Column, Dataset, normalise_header
from segmentation.errors import ImportRefused

MAX_ID_DIGITS = 18  # significant digits of a whole-number customer id
MAX_TEXT_ID_CHARACTERS = 200
MAX_WHOLE_DIGITS = 18  # significant digits of a whole-number value (bigint holds them all)
MAX_NUMBER_CHARACTERS = 64  # of a number as written (it is stored as written)
#: a number's limits: float64 and numeric hold every value within them exactly enough
MAX_SIGNIFICANT_DIGITS = 30
MAX_NUMBER_MAGNITUDE = Decimal(10) ** 15
MIN_NUMBER_MAGNITUDE = Decimal(10) ** -300  # of a number that is not zero: float8 refuses 1e-400
MAX_DECIMAL_PLACES = 1000  # numeric refuses more than 16383
MAX_QUOTED_CHARACTERS = 40  # of a value quoted in a reason
MAX_HEADER_NAMES = 20  # header names listed when a column is missing
MAX_CATEGORY_NAMES = 20  # allowed values listed when a category is not one of them

_DIGITS = re.compile(r"[0-9]+")
_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: UTF-16 halves that are not part of a pair: a str may hold them, UTF-8 (and PostgreSQL) cannot
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_BOOLEAN_TEXT = "yes/no/true/false/1/0"
#: the placeholder of a value in `reason_pattern` (reasons grouped for `top_reasons`)
ELLIPSIS = "…"
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")


# --- the header ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """Where the id and each declared column sit in the file, and what else the file has.

    `positions` maps "customer_id" and each declared column name to its field index (the
    declared columns in declaration order). `encoding` is the file's; `decimal_marks` the
    characters its numbers may mark decimals with ("." or ",", or ".," for either).
    """

    delimiter: str
    n_fields: int
    positions: dict[str, int]
    ignored: tuple[str, ...]
    encoding: str = "utf-8"
    decimal_marks: str = "."


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
    # names a user spelled out (mapped, or declared in their own [dataset] or [orders]) win over
    # others that only normalise alike ("id" declared, "_id" beside it); under the default mall
    # declaration two id columns stay ambiguous and the file is refused
    exact = {}
    if dataset != MALL:
        exact = {"customer_id": dataset.id_column.strip()} | {column.name: column.source.strip() for column in dataset.columns}
    exact |= {target: name.strip() for name, target in (column_map or {}).items()}
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
            first_exact, this_exact = (exact.get(target) == spelled.strip() for spelled in (header[found[target]], name))
            if first_exact == this_exact:
                raise ImportRefused(
                    f"{source} line 1: columns {_quote(header[found[target]])} and {_quote(name)} both map to"
                    f" {target}; name the one to read exactly as the file spells it"
                )
            if first_exact:
                ignored.append(name)
                continue
            ignored.append(header[found[target]])
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


#: a byte the file's encoding could not decode, kept as a lone surrogate (`source`: "surrogateescape")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _undecodable(label: str, value: str, encoding: str) -> RowRejected | None:
    """The rejection of a value holding a byte that is not text in the file's `encoding`, or None."""
    if value.isascii():
        return None
    found = _ESCAPED_BYTE.search(value)
    if found is None:
        return None
    byte = ord(found.group()) - 0xDC00
    other = "cp1252" if encoding != "cp1252" else "utf-8"
    rest = (f"holds the byte {{}} that is not {encoding} text; set the encoding setting to the file's"
            f" (e.g. encoding = \"{other}\") or save the file as UTF-8")
    shown = _quote(_ESCAPED_BYTE.sub("\ufffd", value))  # as the stored raw line shows it
    return RowRejected(f"{label} {shown} {rest.format(f'{byte:#04x}')}", f"{label} '{ELLIPSIS}' {rest.format(ELLIPSIS)}")


def _bad_character(value: str) -> str | None:
    """Why a text value cannot be stored as it is (a NUL character, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii() and _LONE_SURROGATE.search(value):
        return "contains a lone surrogate (not a Unicode character)"
    return None


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
        problem = _bad_character(value)
        if problem:
            raise _rejected("customer id", value, problem)
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


def _number_problem(value: str) -> str | None:
    """Why a decimal `value` (matching `_DECIMAL`) cannot be stored, or None.

    Limits: at most 30 significant digits, at most 64 characters, at most 1e15 in absolute
    value and at most 1000 decimal places, so that the stored text is short and both float64
    (the fit) and PostgreSQL's numeric (the views) take it. (`_tiny` checks the other end.)
    """
    mantissa, _, exponent_text = value.lower().partition("e")
    whole, _, fraction = mantissa.lstrip("+-").partition(".")
    significant = len((whole + fraction).lstrip("0"))
    if significant > MAX_SIGNIFICANT_DIGITS:
        return f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
    if len(value) > MAX_NUMBER_CHARACTERS:
        return f"is longer than {MAX_NUMBER_CHARACTERS} characters"
    exponent = int(exponent_text) if exponent_text else 0  # at most 62 digits here
    if significant and exponent > MAX_DECIMAL_PLACES:  # far above the limit; spares Decimal a huge exponent
        return "is too large (at most 1e15 in absolute value)"
    if len(fraction) - exponent > MAX_DECIMAL_PLACES:
        return f"has more than {MAX_DECIMAL_PLACES} decimal places"
    if abs(Decimal(value)) > MAX_NUMBER_MAGNITUDE:
        return "is too large (at most 1e15 in absolute value)"
    return None


def _tiny(value: str) -> str | None:
    """Why a number too close to zero for float8 (PostgreSQL refuses '1e-400'::float8) is refused."""
    number = abs(Decimal(value))
    if number and number < MIN_NUMBER_MAGNITUDE:
        return "is too close to zero (at least 1e-300 in absolute value, or 0)"
    return None


def _decimal_point(column: Column, value: str, decimal_marks: str) -> str:
    """A number as written with `decimal_marks`, with a point for its decimal mark; RowRejected
    for a mark the file does not use (or both: a thousands separator)."""
    if "," in value and "," in decimal_marks:
        if "." in value or value.count(",") > 1:
            raise _rejected(column.label, value, "is not a number (write it without thousands separators)")
        return value.replace(",", ".")
    if "," in value and re.fullmatch(r"[+-]?[0-9]*,[0-9]+", value):
        raise _rejected(column.label, value, 'is not a number; for decimal commas set decimal_separator = ","')
    if "." in value and "." not in decimal_marks:
        raise _rejected(column.label, value, 'is not a number: decimal_separator is ","')
    return value


def parse_value(column: Column, value: str, decimal_marks: str = ".") -> str | None:
    """The stored text of one declared column's (cleaned) value; None for empty; or RowRejected.

    number: decimal (ASCII digits, optional sign, a decimal mark of `decimal_marks` (stored as a
    point) and exponent) with at most 30
    significant digits, at most 64 characters, 0 or 1e-300..1e15 in absolute value, at most
    1000 decimal places, within range, stored as written without a leading '+'; whole: [+-] and
    digits, at most 18 of them significant, within range, stored as a plain integer;
    category: trimmed, one of `values` when declared (any case, or a value alias), stored in
    its canonical spelling; boolean: yes/no/true/false/1/0/y/n/t/f in any case, stored as
    'true' / 'false'.
    """
    if value == "":
        return None
    kind = column.type
    if kind == "number":
        written, value = value, _decimal_point(column, value, decimal_marks)
        if not _DECIMAL.fullmatch(value):
            raise _rejected(column.label, written, "is not a number")
        problem = _number_problem(value) or _range_problem(column, Decimal(value)) or _tiny(value)
        if problem:
            raise _rejected(column.label, written, problem)
        return value[1:] if value[0] == "+" else value
    if kind == "whole":
        if not _WHOLE.fullmatch(value):
            raise _rejected(column.label, value, "is not a whole number")
        digits = value.lstrip("+-").lstrip("0")
        if len(digits) > MAX_WHOLE_DIGITS:  # also keeps int() from reading thousands of digits
            raise _rejected(column.label, value, f"is too large (at most {MAX_WHOLE_DIGITS} digits)")
        number = int(value[0] + digits if value[0] == "-" and digits else digits or "0")
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
    problem = _bad_character(value)
    if problem:
        raise _rejected(column.label, value, problem)
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


UNBALANCED_QUOTE = "unbalanced double quote (a field's closing quote is missing)"


def _split(line: str, delimiter: str) -> list[str]:
    if '"' not in line:
        return line.split(delimiter)
    if line.count('"') % 2:
        raise RowRejected(UNBALANCED_QUOTE)
    try:
        return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
    except csv.Error as error:
        raise RowRejected(f"cannot split the line into fields ({error})", "cannot split the line into fields") from None


def id_in_prefix(text: str, layout: ColumnLayout, dataset: Dataset = MALL) -> str | None:
    """The customer id of a line that cannot be split into fields (an open quote, or only its
    first characters kept), when the id's field is complete and unquoted in `text`; else None.
    A rejected line whose id can be read keeps its customer active."""
    position = layout.positions["customer_id"]
    fields = text.split(layout.delimiter, position + 1)
    if len(fields) <= position + 1 or any('"' in field for field in fields[:position + 1]):
        return None
    with contextlib.suppress(RowRejected):
        return parse_customer_id(_clean(fields[position]), dataset.id_type)
    return None


def line_customer_id(line: str, layout: ColumnLayout, dataset: Dataset = MALL) -> str | None:
    """The customer id of a data line as `parse_line` reads it, without checking the other fields
    (for lines already checked when they were imported); None where it cannot be read."""
    with contextlib.suppress(RowRejected):
        fields = _split(line, layout.delimiter)
        position = layout.positions["customer_id"]
        if position < len(fields):
            return parse_customer_id(_clean(fields[position]), dataset.id_type)
    return None


def _field_value(column: Column, text: str, layout: ColumnLayout) -> str | None:
    """`parse_value` of a field as the file has it (its encoding and decimal marks)."""
    problem = _undecodable(column.label, text, layout.encoding)
    if problem:
        raise problem
    return parse_value(column, text, layout.decimal_marks)


def parse_line(line: str, layout: ColumnLayout, dataset: Dataset = MALL) -> ParsedLine:
    """Check and normalise one data line, or one record whose quoted fields span lines (never
    raises for any text)."""
    if line.strip() == "":
        return ParsedLine(None, None, "empty line", "empty line")
    customer_id = None
    try:
        try:
            fields = _split(line, layout.delimiter)
        except RowRejected:
            customer_id = id_in_prefix(line, layout, dataset)
            raise
        id_position = layout.positions["customer_id"]
        if len(fields) != layout.n_fields:
            if id_position < len(fields):  # most likely still the id: keeps its customer active
                with contextlib.suppress(RowRejected):
                    customer_id = parse_customer_id(_clean(fields[id_position]), dataset.id_type)
            raise RowRejected(f"{len(fields)} fields, expected {layout.n_fields}",
                              f"{ELLIPSIS} fields, expected {layout.n_fields}")
        id_text = _clean(fields[id_position])
        problem = _undecodable("customer id", id_text, layout.encoding)
        if problem:
            raise problem
        customer_id = parse_customer_id(id_text, dataset.id_type)
        positions = layout.positions
        values = tuple(_field_value(column, _clean(fields[positions[column.name]]), layout) for column in dataset.columns)
    except RowRejected as rejected:
        return ParsedLine(customer_id, None, rejected.reason, rejected.pattern)
    return ParsedLine(customer_id, values)

