"""How numbers and segments are shown: percentages, short segment labels, colours, rounding.

Each rule exists twice, in Python (the command line, the report) and as an SQL expression (the
views that `segmentation.publish.views` generates), so that a dashboard, the report and `segment run`
print the same 41.2 % and the same "S3 High income". Tests hold the two sides equal. The fixed
views of the migrations carry their own frozen copies of these expressions.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from segmentation.palette import PALETTE, segment_color

__all__ = [
    "LABEL_LENGTH", "percent", "segment_color", "segment_label",
    "sql_color", "sql_decimals", "sql_label", "sql_percent", "sql_round",
]

#: Longest short label: bar-chart axes drop longer ones.
LABEL_LENGTH = 20


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


def sql_decimals(value: str, partition: str) -> str:
    """SQL for the decimals an average is shown with: three significant digits of the largest
    absolute `value` in the window `partition by <partition>`, at least one (60.5, 5.12, 0.0234)."""
    largest = f"nullif(max(abs({value})) over (partition by {partition}), 0)"
    return f"coalesce(greatest(1, 2 - cast(floor(log({largest})) as integer)), 1)"


def sql_round(value: str, decimals: str) -> str:
    """SQL rounding the float8 expression `value` to `decimals`, still a float8 (the table keeps full precision)."""
    return f"cast(round(cast({value} as numeric), {decimals}) as double precision)"
