"""How numbers and segments are shown: percentages, short segment labels, colours, rounding.

Each rule exists twice, in Python (the command line, the report) and as an SQL expression (the
views that `segmentation.publish.views` generates), so that a dashboard, the report and `segment run`
print the same 41.2 % and the same "S3 High income". Tests hold the two sides equal. The fixed
views of the migrations carry their own frozen copies of these expressions.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal

from segmentation.palette import PALETTE, segment_color

__all__ = [
    "LABEL_LENGTH", "MAX_DECIMALS", "decimals", "figure", "percent", "printable", "segment_color",
    "segment_label", "sql_color", "sql_decimals", "sql_gap", "sql_label", "sql_percent", "sql_round",
]

#: Longest short label: bar-chart axes drop longer ones.
LABEL_LENGTH = 20
#: Most decimals a figure is shown with: figures closer than a millionth are shown as equal.
MAX_DECIMALS = 6


def decimals(values, at_least: int = 1, significant: int = 3) -> int:
    """Decimals for figures shown side by side (one feature's segment averages): `significant`
    digits of the largest absolute value, at least `at_least`, and more where two different
    values would otherwise print the same (up to MAX_DECIMALS): 60.5 and 60.54 as 60.50 and 60.54.

    Two values d apart print differently with any number of decimals whose unit is below d,
    i.e. 1 - ceil(log10(d)) of them.
    """
    known = sorted({float(value) for value in values if value is not None and not math.isnan(float(value))})
    if not known:
        return at_least
    largest = max(abs(value) for value in known)
    places = at_least if largest == 0 else max(at_least, significant - 1 - math.floor(math.log10(largest)))
    gaps = [high - low for low, high in zip(known, known[1:]) if high - low >= 10.0**-MAX_DECIMALS]
    if gaps:
        places = max(places, 1 - math.ceil(math.log10(min(gaps))))
    return min(places, MAX_DECIMALS)


def figure(value: float, places: int) -> str:
    """A figure with `places` decimals and thousands separators: 7,701.3."""
    return f"{value:,.{places}f}"


def percent(share: float) -> Decimal:
    """A share (0..1) as a percentage with one decimal, exactly as the views' `_pct` columns have it.

    PostgreSQL casts a float8 to numeric through its 15 significant digits and rounds half away
    from zero, so 0.4115 (stored as 0.41149999...) is 41.2 here and there.
    """
    return Decimal(f"{share * 100:.15g}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def segment_label(segment_id: int, segment_name: str) -> str:
    """A short axis label, unique within a run: "S3 " and the name up to its first comma,
    cut to LABEL_LENGTH characters with an ellipsis ("S3 High income")."""
    label = f"S{int(segment_id)} {segment_name.split(',')[0]}"
    return re.sub(rf"^(.{{{LABEL_LENGTH - 1}}}).{{2,}}$", "\\1\u2026", label, flags=re.DOTALL)


def sql_percent(share: str) -> str:
    """SQL for percent() of the float8 expression `share` (numeric, one decimal)."""
    return f"round(cast({share} * 100 as numeric), 1)"


def sql_label(segment_id: str, segment_name: str) -> str:
    """SQL for segment_label() of the two expressions."""
    return (
        f"regexp_replace('S' || {segment_id} || ' ' || split_part({segment_name}, ',', 1),"
        f" '^(.{{{LABEL_LENGTH - 1}}}).{{2,}}$', '\\1\u2026')"
    )


def sql_color(segment_id: str) -> str:
    """SQL for segment_color() of the integer expression `segment_id` (Python's modulo, for any id)."""
    colours = ", ".join(f"'{colour}'" for colour in PALETTE)
    size = len(PALETTE)
    return f"(array[{colours}])[(({segment_id} - 1) % {size} + {size}) % {size} + 1]"


def sql_gap(value: str, partition: str) -> str:
    """SQL for each `value`'s distance to the next smaller one in the window (null for the smallest):
    what `sql_decimals` needs, computed a step before it (window functions do not nest)."""
    return f"{value} - lag({value}) over (partition by {partition} order by {value})"


def sql_decimals(value: str, gap: str, partition: str) -> str:
    """SQL for decimals() of the float8 `value`s in the window `partition by <partition>`, given
    each one's `gap` (`sql_gap`): three significant digits of the largest, at least one, more
    where two differ by less (60.5, 5.12, 0.0234; 60.50 and 60.54), at most MAX_DECIMALS."""
    largest = f"nullif(max(abs({value})) over (partition by {partition}), 0)"
    smallest_gap = f"min({gap}) filter (where {gap} >= {10.0**-MAX_DECIMALS!r}) over (partition by {partition})"
    return (
        f"least({MAX_DECIMALS}, greatest(coalesce(2 - cast(floor(log({largest})) as integer), 1), 1,"
        f" coalesce(1 - cast(ceil(log({smallest_gap})) as integer), 1)))"
    )


def sql_round(value: str, decimals: str) -> str:
    """SQL rounding the float8 expression `value` to `decimals`, still a float8 (the table keeps full precision)."""
    return f"cast(round(cast({value} as numeric), {decimals}) as double precision)"


#: what must not reach a terminal as it is: C0 and C1 control characters (ESC starts an escape
#: sequence), bidirectional overrides and isolates, and lone surrogates (not Unicode characters)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` safe to print on a terminal: each character of `_UNPRINTABLE` shown as its escape
    (`\\x1b`, `\\u202e`) instead of acting. Data (category values, file names, stored errors) reaches
    segment names and messages, and an escape sequence in it would drive the terminal."""
    return _UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape", "backslashreplace").decode("ascii"), str(text))
