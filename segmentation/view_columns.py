"""The names of the view columns a declaration gives, and why a declaration cannot have them.

Pure: names in, names out (or a ValueError of one line). The views that follow the
declaration (`segmentation.publish.views`) take every generated column name from here, and
settings validation calls `check` before any work, so a declaration whose columns would
collide in a view is refused when it is read, never after an import.

What a declared column gives, besides the views' fixed columns (`FIXED`):

- `current_customer_segments` and `segment_movers`: the column under its own name;
- `current_segment_profiles`: per number `avg_<name>`, `median_<name>` and `<name>_index`
  (a trailing `_k` dropped: `annual_income_index`); per boolean `<name>_share`, and per value
  listed in a category's `values` `<name>_<slug>_share` (a column named `gender`: `<slug>_share`,
  the mall's `female_share`), each share with `_pct` and `_index` beside it;
- `segment_profile_history`: the averages, shares and their `_pct` columns.

A value's slug is its lower-case text with every run of characters other than a-z and 0-9
made `_` (`value` when nothing is left). When two values of one category give the same
name, or a name would pass PostgreSQL's 63 bytes, that category's share columns are named by
the values' positions in `values` instead (`region_1_share`, `region_2_share`, ...). Any
other clash (with a fixed column, or between two declared columns) or a name too long is
refused, naming the column and what to do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from segmentation.dataset import Column, Dataset

#: PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1) and drops the rest
MAX_IDENTIFIER_BYTES = 63
#: most columns a view may have (PostgreSQL: "target lists can have at most 1664 entries")
MAX_VIEW_COLUMNS = 1664

CUSTOMER_SEGMENTS = "current_customer_segments"
SEGMENT_PROFILES = "current_segment_profiles"
PROFILE_HISTORY = "segment_profile_history"
SEGMENT_MOVERS = "segment_movers"

#: each generated view's own columns, which no declared column may take
FIXED: dict[str, tuple[str, ...]] = {
    CUSTOMER_SEGMENTS: (
        "customer_id", "segment_id", "segment_name", "segment_label", "segment_order", "segment_color",
        "distance_to_centroid", "run_id", "published_at", "published_date", "second_segment_id",
        "margin_to_second", "is_outlier", "in_segment_since",
    ),
    SEGMENT_PROFILES: (
        "segment_id", "segment_name", "segment_label", "segment_order", "segment_color", "customer_count",
        "customer_share", "customer_share_pct", "recommendation", "run_id", "published_at", "published_date",
        "distinguishing_features", "centroid_shift", "previous_customer_count",
    ),
    PROFILE_HISTORY: (
        "segmentation", "run_id", "published_at", "published_date", "is_latest_of_day", "segment_id", "segment_name",
        "segment_label", "segment_order", "segment_color", "customer_count", "customer_share",
        "customer_share_pct", "centroid_shift",
    ),
    SEGMENT_MOVERS: (
        "customer_id", "from_segment_id", "from_segment_name", "to_segment_id", "to_segment_name",
        "in_from_segment_since_run_id", "distance_to_centroid", "run_id", "published_at", "published_date",
    ),
}


class Share(NamedTuple):
    """A share column of the profile views: its name, its declared column, and the category
    value it counts (None: a boolean's share of true)."""

    name: str
    column: Column
    value: str | None


def average_name(column: Column) -> str:
    return f"avg_{column.name}"


def median_name(column: Column) -> str:
    return f"median_{column.name}"


def index_name(column: Column) -> str:
    """The profile column of a numeric feature's index (mall: annual_income_index)."""
    stem = column.name[:-2] if column.name.endswith("_k") else column.name
    return f"{stem}_index"


def slug(value: str) -> str:
    """A category value as part of a column name: lower case, other characters than a-z and 0-9 as `_`."""
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") or "value"


def _share_name(column: Column, part: str) -> str:
    return f"{part}_share" if column.name == "gender" else f"{column.name}_{part}_share"


def _fits(name: str) -> bool:
    return len(name.encode()) <= MAX_IDENTIFIER_BYTES


def category_shares(column: Column) -> list[Share]:
    """The share columns of a category's declared `values`, by slug, or by position when the
    slugs give one name twice or a name (with its `_index`) too long for PostgreSQL."""
    values = list(column.values or ())
    names = [_share_name(column, slug(value)) for value in values]
    if len(set(names)) < len(names) or not all(_fits(f"{name}_index") for name in names):
        names = [f"{column.name}_{position}_share" for position in range(1, len(values) + 1)]
    return [Share(name, column, value) for name, value in zip(names, values)]


def shares(dataset: Dataset) -> list[Share]:
    """Every share column of the profile views, in declaration order."""
    found = []
    for column in dataset.columns:
        if column.type == "boolean":
            found.append(Share(f"{column.name}_share", column, None))
        elif column.type == "category" and column.values:
            found.extend(category_shares(column))
    return found


def view_columns(dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    """Each generated view's columns as (name, where it comes from): "fixed" for the view's
    own, else the declared column (`dataset.columns.NAME`); the fixed ones first."""
    numeric = [column for column in dataset.columns if column.is_numeric]
    share_columns = shares(dataset)

    def origin(column: Column) -> str:
        return f"dataset.columns.{column.name}"

    averages = [(average_name(column), origin(column)) for column in numeric]
    medians = [(median_name(column), origin(column)) for column in numeric]
    indexes = [(index_name(column), origin(column)) for column in numeric]
    share_names = [(share.name, origin(share.column)) for share in share_columns]
    share_pcts = [(f"{share.name}_pct", origin(share.column)) for share in share_columns]
    share_indexes = [(f"{share.name}_index", origin(share.column)) for share in share_columns]
    fixed = {view: [(name, "fixed") for name in names] for view, names in FIXED.items()}
    return {
        CUSTOMER_SEGMENTS: fixed[CUSTOMER_SEGMENTS] + [(column.name, origin(column)) for column in dataset.columns],
        SEGMENT_MOVERS: fixed[SEGMENT_MOVERS] + [(column.name, origin(column)) for column in dataset.columns],
        SEGMENT_PROFILES: fixed[SEGMENT_PROFILES] + averages + share_names + share_pcts + medians + indexes + share_indexes,
        PROFILE_HISTORY: fixed[PROFILE_HISTORY] + averages + share_names + share_pcts,
    }


def check(dataset: Dataset) -> None:
    """Raise ValueError (one line naming the declared column and what to do) when a view
    column the declaration gives would be longer than 63 bytes or clash with another."""
    for view, columns in view_columns(dataset).items():
        if len(columns) > MAX_VIEW_COLUMNS:
            raise ValueError(
                f"dataset.columns: the declaration gives {view} {len(columns):,} columns and PostgreSQL allows"
                f" {MAX_VIEW_COLUMNS:,}; declare fewer columns or category values"
            )
        seen: dict[str, str] = {}
        for name, where in columns:
            if where != "fixed" and not _fits(name):
                raise ValueError(
                    f"{where}: its view column {name!r} in {view} is {len(name.encode())} bytes long and PostgreSQL"
                    f" keeps only {MAX_IDENTIFIER_BYTES}; choose a shorter name"
                )
            earlier = seen.get(name)
            if earlier is None:
                seen[name] = where
                continue
            if earlier == where:  # a declared column's own names cannot clash: two of its values
                raise ValueError(f"{where}: two of its values give the view column {name!r} in {view}")
            first, second = (earlier, where) if where != "fixed" else (where, earlier)
            if first == "fixed":
                raise ValueError(
                    f"{second}: its view column {name!r} in {view} is a column the view has itself; choose another name"
                )
            raise ValueError(
                f"{second}: its view column {name!r} in {view} is also made by {first}; rename one of them"
            )
