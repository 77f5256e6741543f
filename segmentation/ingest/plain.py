"""The fast path: whole blocks of plain lines, checked by one regular expression.

A plain line (`plain_line_pattern`) has the right number of fields and every value already
valid, within its range and in a spelling whose stored form is known, so a block of them is
rewritten into COPY records by one generated list comprehension (`_converter`) with no
per-value Python logic. Any line the pattern does not match goes to `rules.parse_line`.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from decimal import Decimal

from segmentation.dataset import BOOLEAN_WORDS, MALL, Column, Dataset
from segmentation.ingest.rules import (
    MAX_ID_DIGITS,
    MAX_TEXT_ID_CHARACTERS,
    MAX_WHOLE_DIGITS,
    ColumnLayout,
    _bounds,
)

#: what makes PostgreSQL's array_out quote a text element: a brace, the comma delimiter, a
#: double quote, a backslash or white space as array_isspace knows it (ASCII only)
_QUOTED_ELEMENT = re.compile(r'[{},"\\ \t\n\r\v\f]')
_WHITE_SPACE = re.compile(r"[ \t\v\f]")  # of the above, what a plain value may hold

#: integer and fraction digits of a number on the fast path: at most 15 each keeps it below
#: 1e15, within 30 significant digits and 64 characters (`rules._number_problem`); longer
#: numbers take parse_line
PLAIN_NUMBER_DIGITS = 15


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


def _numeric_plain(column: Column, point: bool = True) -> str:
    """Values of a number or whole column that are valid and already in their stored form
    (without `point`, where a point is not a decimal mark: whole values only)."""
    low, high = _bounds(column)
    fraction = column.type == "number" and point
    digits = PLAIN_NUMBER_DIGITS if column.type == "number" else MAX_WHOLE_DIGITS
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
    return "(?:" + "|".join(parts) + ")" if parts else ""


def _text_classes(delimiter: str) -> tuple[str, str]:
    """(inner, outer) character classes of text that needs no quoting in a CSV field or an
    array literal: no delimiter, comma, quote, brace, backslash, line break, NUL or lone
    surrogate; the first and last character are no space and no single quote (`_clean` would
    strip them)."""
    forbidden = re.escape(delimiter) + r',"{}\\\n\r\x00\ud800-\udfff'
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


def _value_plain(column: Column, delimiter: str, point: bool = True) -> str:
    """Regex of one declared column's plain values (empty included); `point`: whether a point
    marks decimals in the file."""
    if column.type in ("number", "whole"):
        numeric = _numeric_plain(column, point)
        return numeric + "?" if numeric else ""
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


def plain_line_pattern(layout: ColumnLayout, dataset: Dataset = MALL, quotes: bool = True) -> str | None:
    """A regular expression (without line end) of the layout's plain lines, or None.

    A plain line has the right number of fields, no quote but those around a whole field, and
    every value valid and in a spelling `_converter` knows how to store, so such lines can be
    rewritten without checking each value. Any line it does not match goes to `parse_line`.
    Without `quotes`, the pattern of lines with no double quote at all (about a tenth faster to match).
    """
    delimiter = layout.delimiter
    by_position = {position: name for name, position in layout.positions.items()}
    columns = {column.name: column for column in dataset.columns}
    fields = []
    for index in range(layout.n_fields):
        name = by_position.get(index)
        if name == "customer_id":
            value = _id_plain(dataset, delimiter)
            fields.append(f'(?:{value}|"{value}")' if quotes else f"(?:{value})")
            continue
        if name is None:  # an ignored column: anything without quotes or delimiters
            value = f'[^{re.escape(delimiter)}"\\n\\r]*'
        else:
            value = _value_plain(columns[name], delimiter, "." in layout.decimal_marks)
        if quotes:
            fields.append(f'(?:{value}|"(?:{value})")' if value else '(?:|"")')
        else:
            fields.append(f"(?:{value})")
    return re.escape(delimiter).join(fields)


def verbatim_line_pattern(layout: ColumnLayout, dataset: Dataset = MALL) -> str | None:
    """A regular expression (without line end) of lines whose text after the id is already the
    stored array's body, or None when the layout has none.

    Such a line is the id, then every declared column in declaration order and nothing else,
    each value present, without quotes and in its stored spelling needing no quotes in an
    array (numbers as plain lines write them; categories and booleans as stored: `Female`,
    `true`). A verbatim line is plain (`plain_line_pattern`); `_verbatim_converter` turns a
    block of them into records by splitting each line once (about half the Python time of
    `_converter` on the mall's lines).
    """
    delimiter = layout.delimiter
    expected = {"customer_id": 0, **{column.name: index for index, column in enumerate(dataset.columns, start=1)}}
    if layout.positions != expected or layout.n_fields != len(expected):
        return None
    fields = [f"(?:{_id_plain(dataset, delimiter)})"]
    for column in dataset.columns:
        if column.type in ("number", "whole"):
            value = _numeric_plain(column, "." in layout.decimal_marks)
        elif column.type == "boolean" or column.values is not None:
            stored = sorted({stored for form, stored in _spellings(column).items()
                             if form == stored and array_element(stored) == stored and delimiter not in stored},
                            key=lambda text: (-len(text), text))
            value = "(?:" + "|".join(map(re.escape, stored)) + ")" if stored else ""
        else:
            return None  # free text may need quotes in an array: `_converter` looks at each value
        if not value:
            return None
        fields.append(value)
    return re.escape(delimiter).join(fields)


def _verbatim_converter(layout: ColumnLayout, dataset: Dataset, numbered: bool = False) -> Callable[[list[str], str, int], str]:
    """`_converter` for lines that match `verbatim_line_pattern`: the text after the id is the array's body."""
    record = "{f[0].lstrip(Z)}" if dataset.id_type == "whole" else "{f[0]}"
    record += ',"{{{f[1]}}}"{tail}' if layout.delimiter == "," else ',"{{{f[1].replace(d, C)}}}"{tail}'
    return _compiled(record, numbered, {"d": layout.delimiter, "Z": "0", "C": ","}, "line.split(d, 1)")


def array_element(value: str | None) -> str:
    """One element of a text array as PostgreSQL prints it (array_out): quoted only when it is
    empty, spells NULL in any case, or holds a brace, comma, quote, backslash or white space."""
    if value is None:
        return "NULL"
    if value and not _QUOTED_ELEMENT.search(value) and not (value.isascii() and value.upper() == "NULL"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: tuple[str | None, ...]) -> str:
    """A text array of `values` as PostgreSQL prints it: `cast(attributes as text)` of the row
    that stores them. One spelling per content, so a staged line and a stored row compare as text
    (no array to parse for the rows that did not change)."""
    return "{" + ",".join(map(array_element, values)) + "}"


def _spaced(value: str) -> str:
    """A plain free-text value as an array element (empty: NULL) inside a CSV field (quotes doubled)."""
    if not value:
        return "NULL"
    return '""' + value + '""' if _WHITE_SPACE.search(value) else value


def _converter(layout: ColumnLayout, dataset: Dataset, numbered: bool = False) -> Callable[[list[str], str, int], str]:
    """A function turning plain lines (quotes removed) into COPY records: id,"{values}" + tail
    (`numbered`: record number,id,"{values}" + tail, numbered from `start`), the values
    written as `array_literal` writes them.

    Generated from the layout as one list comprehension: per line one split, and per value
    at most one dictionary look-up (categories, booleans) or `or 'NULL'` (empty numbers).
    The generated code holds only field indexes; spellings are looked up in dictionaries.
    """
    namespace: dict[str, object] = {"d": layout.delimiter, "N": "NULL", "Z": "0", "T": _spaced}
    id_field = f"f[{layout.positions['customer_id']}]"
    parts = []
    for index, column in enumerate(dataset.columns):
        field = f"f[{layout.positions[column.name]}]"
        if column.type in ("number", "whole"):
            parts.append(f"{{{field} or N}}")
        elif column.type == "boolean" or column.values is not None:
            spellings = {form: array_element(stored).replace('"', '""') for form, stored in _spellings(column).items()}
            namespace[f"m{index}"] = {"": "NULL", **spellings}
            parts.append(f"{{m{index}[{field}]}}")
        else:  # free text: quoted when it holds white space, as PostgreSQL prints it
            parts.append(f"{{T({field})}}")
    record = ("{%s.lstrip(Z)}" % id_field if dataset.id_type == "whole" else "{%s}" % id_field)
    record += ',"{{' + ",".join(parts) + '}}"{tail}'
    return _compiled(record, numbered, namespace, "line.split(d)")


def _compiled(record: str, numbered: bool, namespace: dict[str, object], split: str) -> Callable[[list[str], str, int], str]:
    """Compile `convert(lines, tail, start)`: the f-string `record` of each line's fields `f` (`split`), joined."""
    lines = "line in lines"
    if numbered:  # each record starts with its number, `start` for the first line
        record, lines = "{n}," + record, "n, line in enumerate(lines, start)"
    code = (
        "def convert(lines, tail, start):\n"
        f"    return ''.join([f{record!r} for {lines} for f in [{split}]])\n"
    )
    exec(compile(code, "<segmentation.ingest converter>", "exec"), namespace)  # noqa: S102 - code of indexes only
    return namespace["convert"]  # type: ignore[return-value]
