"""The views whose columns follow the data-set declaration, generated from it.

`current_customer_segments`, `current_segment_profiles` and `segment_profile_history` show
each declared column under its declared name. They are the one part of the schema a run may
(re)create outside Alembic: `ensure_views` does it from the declaration, inside the publish
transaction (under the run lock), with comments and the reader's grant, and only when the
declaration changed (the generated SQL's hash is kept in `view_versions`). Every other view
is fixed and lives in the migrations.

Identifiers from the declaration are quoted with `psycopg.sql.Identifier`; labels and units
go in as `psycopg.sql.Literal`.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from psycopg import sql
from sqlalchemy.engine import Connection

from segmentation import display
from segmentation.dataset import Column, Dataset

SCHEMA = "segmentation"
READER_ROLE = "segmentation_reader"

_SQL_TYPES = {"number": "numeric", "whole": "bigint", "category": "text", "boolean": "boolean"}

_LATEST_RUN = """
with latest_run as (
    select run_id, published_at
    from segmentation_internal.runs
    where status = 'published'
    order by published_at desc, run_id desc
    limit 1
)"""


def share_name(column: Column, value: str | None = None) -> str:
    """The profile column of a category value's share ("female_share") or a boolean's ("student_share")."""
    if value is None:
        return f"{column.name}_share"
    slug = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") or "value"
    return f"{slug}_share" if column.name == "gender" else f"{column.name}_{slug}_share"


def index_name(column: Column) -> str:
    """The profile column of a numeric feature's index (mall: annual_income_index)."""
    stem = column.name[:-2] if column.name.endswith("_k") else column.name
    return f"{stem}_index"


def _share_columns(dataset: Dataset) -> list[tuple[str, Column, str | None]]:
    """(view column, declared column, category value or None for a boolean's true share)."""
    shares = []
    for column in dataset.columns:
        if column.type == "boolean":
            shares.append((share_name(column), column, "true"))
        elif column.type == "category" and column.values:
            shares.extend((share_name(column, value), column, value) for value in column.values)
    return shares


def _describe(column: Column) -> str:
    text = column.label[:1].upper() + column.label[1:]
    return f"{text} ({column.unit})" if column.unit else text


def _segment_columns(indent: str) -> sql.Composable:
    """Presentation columns of a segment (label, order, colour) for a profile row `profile`."""
    return sql.SQL(
        "{label} as segment_label,\n" + indent
        + "cast(dense_rank() over (partition by profile.run_id order by profile.segment_id) as integer) as segment_order,\n"
        + indent + "{color} as segment_color"
    ).format(
        label=sql.SQL(display.sql_label("profile.segment_id", "profile.segment_name")),
        color=sql.SQL(display.sql_color("profile.segment_id")),
    )


_SEGMENT_COMMENTS = {
    "segment_label": "Short label for chart axes, unique within the run: S<segment_id> and the name up to its first comma,"
    f" at most {display.LABEL_LENGTH} characters.",
    "segment_order": "Position of the segment in its run by segment_id (1..k): sort bars and legends by it.",
    "segment_color": "Hex colour of the segment, the same in the report; follows segment_id, so it is kept from run to run.",
}
_PUBLISHED_DATE = "Date of published_at in the session's time zone (for a daily grain)."


def customer_segments_sql(dataset: Dataset) -> tuple[sql.Composed, dict[str, str]]:
    """`current_customer_segments` and its column comments."""
    id_expression = (
        sql.SQL("cast(assigned.customer_id as bigint)") if dataset.id_type == "whole" else sql.SQL("assigned.customer_id")
    )
    attributes = [
        sql.SQL("cast(assigned.attributes[{}] as {}) as {}").format(
            sql.Literal(position), sql.SQL(_SQL_TYPES[column.type]), sql.Identifier(column.name)
        )
        for position, column in enumerate(dataset.columns, start=1)
    ]
    # the segments' columns are computed once per segment (materialized), not per customer row
    statement = sql.SQL(
        "create view segmentation.current_customer_segments with (security_barrier = true) as\n"
        "-- grain: one row per customer of the latest published run" + _LATEST_RUN + ",\n"
        "segments as materialized (\n    select\n        profile.run_id,\n        profile.segment_id,\n        profile.segment_name,\n"
        "        {segment_columns}\n    from segmentation_internal.segment_profiles as profile\n"
        "    where profile.run_id = (select run_id from latest_run)\n)\n"
        "select\n    {id} as customer_id,\n    assigned.segment_id,\n    segments.segment_name,\n"
        "    segments.segment_label,\n    segments.segment_order,\n    segments.segment_color,\n    {attributes},\n"
        "    assigned.distance_to_centroid,\n    assigned.run_id,\n    latest_run.published_at,\n"
        "    cast(latest_run.published_at as date) as published_date,\n"
        "    assigned.second_segment_id,\n    assigned.margin_to_second,\n    assigned.is_outlier\n"
        "from latest_run\njoin segmentation_internal.customer_segments as assigned\n    on assigned.run_id = latest_run.run_id\n"
        "join segments\n    on segments.segment_id = assigned.segment_id"
    ).format(id=id_expression, attributes=sql.SQL(",\n    ").join(attributes), segment_columns=_segment_columns(" " * 8))
    comments = {
        "customer_id": "The customer's id as in the export (" + ("a whole number" if dataset.id_type == "whole" else "text") + ").",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name, e.g. High income, high spending.",
        **_SEGMENT_COMMENTS,
        "distance_to_centroid": "Distance to the segment centre in scaled units (standard deviations by default).",
        "run_id": "The run that assigned the segment (see run_history).",
        "published_at": "When that run was published.",
        "published_date": _PUBLISHED_DATE,
        "second_segment_id": "The next-nearest segment.",
        "margin_to_second": "Distance to the second segment minus distance to the own one; small means borderline.",
        "is_outlier": "True beyond Q3 + 3 x IQR of the distances in the segment (far from every centre).",
    }
    for column in dataset.columns:
        comments[column.name] = f"{_describe(column)}, as the run saw it ({column.type})."
    return statement, comments


_ROUNDED = " Rounded to three significant digits of the run's largest segment value, at least one decimal."

# a measure of a features row, as the profile views show it
_MEAN = sql.SQL(display.sql_round("feature.mean", "feature.decimals"))
_MEDIAN = sql.SQL(display.sql_round("feature.median", "feature.decimals"))
_INDEX = sql.SQL(display.sql_round("feature.index_value", "0"))
_SHARE = sql.SQL("feature.mean")
_SHARE_PCT = sql.SQL(display.sql_percent("feature.mean"))


class _Profile(NamedTuple):
    """The pivoted feature columns of the profile views, by kind, with their comments."""

    averages: list[_Pivot]
    shares: list[_Pivot]
    share_pcts: list[_Pivot]
    medians: list[_Pivot]
    indexes: list[_Pivot]
    comments: dict[str, str]


def _profile_columns(dataset: Dataset) -> _Profile:
    """Pivoted feature columns: averages, shares (0..1 and 0-100), medians, indexes and comments."""
    profile = _Profile([], [], [], [], [], {})
    comments = profile.comments
    numeric = [column for column in dataset.columns if column.is_numeric]
    for column in numeric:
        unit = f" ({column.unit})." if column.unit else "."
        profile.averages.append(_pivot(column.name, None, _MEAN, f"avg_{column.name}"))
        comments[f"avg_{column.name}"] = f"Mean {column.label}{unit}{_ROUNDED}"
        profile.medians.append(_pivot(column.name, None, _MEDIAN, f"median_{column.name}"))
        comments[f"median_{column.name}"] = f"Median {column.label}{unit}{_ROUNDED}"
        profile.indexes.append(_pivot(column.name, None, _INDEX, index_name(column)))
        comments[index_name(column)] = f"Segment mean of {column.label} / overall mean x 100 (100 = average), whole number."
    for name, column, value in _share_columns(dataset):
        profile.shares.append(_pivot(column.name, value, _SHARE, name))
        comments[name] = f"Share of customers with {column.label} = {value} (0..1)."
        profile.share_pcts.append(_pivot(column.name, value, _SHARE_PCT, f"{name}_pct"))
        comments[f"{name}_pct"] = f"Percentage of customers with {column.label} = {value} (0-100, one decimal)."
        profile.indexes.append(_pivot(column.name, value, _INDEX, f"{name}_index"))
        comments[f"{name}_index"] = f"Segment share of {column.label} = {value} / overall share x 100, whole number."
    return profile


class _Pivot(NamedTuple):
    """The aggregate expression and the column name it gives."""

    expression: sql.Composable
    alias: str


def _pivot(feature: str, category: str | None, measure: sql.Composable, alias: str) -> _Pivot:
    category_test = sql.SQL("feature.category is null") if category is None else sql.SQL("feature.category = {}").format(sql.Literal(category))
    expression = sql.SQL("max({measure}) filter (where feature.feature = {feature} and {category}) as {alias}").format(
        measure=measure, feature=sql.Literal(feature), category=category_test, alias=sql.Identifier(alias)
    )
    return _Pivot(expression, alias)


def _features(where: str) -> sql.Composable:
    """The CTE `features`: segment_features rows (`where`) with the decimals their averages are shown with."""
    return sql.SQL(
        "features as (\n    select\n        feature.*,\n        {decimals} as decimals\n"
        "    from segmentation_internal.segment_features as feature\n    {where}\n)"
    ).format(
        decimals=sql.SQL(display.sql_decimals("feature.mean", "feature.run_id, feature.feature, feature.category")),
        where=sql.SQL(where),
    )


def _pivoted(pivots: list[_Pivot]) -> sql.Composable:
    """The CTE `pivoted`: one row per run and segment with the `pivots` as columns."""
    return sql.SQL(
        "pivoted as (\n    select\n        feature.run_id,\n        feature.segment_id{comma}\n        {pivots}\n"
        "    from features as feature\n    group by feature.run_id, feature.segment_id\n)"
    ).format(comma=_comma(pivots), pivots=sql.SQL(",\n        ").join(pivot.expression for pivot in pivots))


def segment_profiles_sql(dataset: Dataset) -> tuple[sql.Composed, dict[str, str]]:
    """`current_segment_profiles`: fixed columns plus averages, shares, medians and indexes."""
    profile = _profile_columns(dataset)
    shown = profile.averages + profile.shares + profile.share_pcts
    statement = sql.SQL(
        "create view segmentation.current_segment_profiles with (security_barrier = true) as\n"
        "-- grain: one row per segment of the latest published run" + _LATEST_RUN + ",\n"
        "{features},\n{pivoted}\n"
        "select\n    profile.segment_id,\n    profile.segment_name,\n    {segment_columns},\n"
        "    profile.customer_count,\n    profile.customer_share,\n    {share_pct} as customer_share_pct,\n"
        "    {shown}{comma_s}\n    profile.recommendation,\n    profile.run_id,\n    latest_run.published_at,\n"
        "    cast(latest_run.published_at as date) as published_date,\n"
        "    {medians}{comma_m}\n    {indexes}{comma_i}\n    profile.distinguishing_features,\n    profile.centroid_shift,\n"
        "    profile.previous_customer_count\n"
        "from latest_run\njoin segmentation_internal.segment_profiles as profile\n    on profile.run_id = latest_run.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id"
    ).format(
        features=_features("where feature.run_id = (select run_id from latest_run)"),
        pivoted=_pivoted(shown + profile.medians + profile.indexes),
        segment_columns=_segment_columns(" " * 4),
        share_pct=sql.SQL(display.sql_percent("profile.customer_share")),
        shown=_select(shown), comma_s=_comma(shown),
        medians=_select(profile.medians), comma_m=_comma(profile.medians),
        indexes=_select(profile.indexes), comma_i=_comma(profile.indexes),
    )
    comments = {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name from its distinguishing features.",
        **_SEGMENT_COMMENTS,
        "customer_count": "Customers in the segment.",
        "customer_share": "Share of all customers of the run (0..1).",
        "customer_share_pct": "Percentage of all customers of the run (0-100, one decimal, as segment run prints it).",
        "recommendation": "Suggested marketing action for the segment.",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
        "published_date": _PUBLISHED_DATE,
        "distinguishing_features": "In words, what sets the segment apart from the average customer.",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        "previous_customer_count": "Customers in the segment in the previous published run.",
        **profile.comments,
    }
    return statement, comments


def profile_history_sql(dataset: Dataset) -> tuple[sql.Composed, dict[str, str]]:
    """`segment_profile_history`: every published run's segments with averages and shares."""
    profile = _profile_columns(dataset)
    shown = profile.averages + profile.shares + profile.share_pcts
    statement = sql.SQL(
        "create view segmentation.segment_profile_history with (security_barrier = true) as\n"
        "-- grain: one row per segment of every published run, oldest first\n"
        "with published as (\n    select\n        runs.run_id,\n        runs.published_at,\n"
        "        cast(runs.published_at as date) as published_date,\n"
        "        row_number() over (partition by cast(runs.published_at as date)"
        " order by runs.published_at desc, runs.run_id desc) = 1 as is_latest_of_day\n"
        "    from segmentation_internal.runs as runs\n    where runs.status = 'published'\n),\n"
        "{features},\n{pivoted}\n"
        "select\n    published.run_id,\n    published.published_at,\n    published.published_date,\n"
        "    published.is_latest_of_day,\n    profile.segment_id,\n    profile.segment_name,\n    {segment_columns},\n"
        "    profile.customer_count,\n    profile.customer_share,\n    {share_pct} as customer_share_pct,\n"
        "    {shown}{comma_s}\n    profile.centroid_shift\n"
        "from published\njoin segmentation_internal.segment_profiles as profile\n    on profile.run_id = published.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id\n"
        "order by published.published_at, published.run_id, profile.segment_id"
    ).format(
        features=_features("where feature.run_id in (select run_id from published)"),
        pivoted=_pivoted(shown),
        segment_columns=_segment_columns(" " * 4),
        share_pct=sql.SQL(display.sql_percent("profile.customer_share")),
        shown=_select(shown), comma_s=_comma(shown),
    )
    comments = {
        "run_id": "Published run (see run_history).",
        "published_at": "When the run was published.",
        "published_date": _PUBLISHED_DATE,
        "is_latest_of_day": "True for the last run published on its published_date: filter on it for one run per day.",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        **_SEGMENT_COMMENTS,
        "customer_count": "Customers in the segment in that run.",
        "customer_share": "Share of that run's customers (0..1).",
        "customer_share_pct": "Percentage of that run's customers (0-100, one decimal).",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        **{name: profile.comments[name] for name in (pivot.alias for pivot in shown)},
    }
    return statement, comments


def _select(pivots: list[_Pivot]) -> sql.Composable:
    """The outer select of pivoted columns: `pivoted.<alias>` for each."""
    return sql.SQL(",\n    ").join(sql.SQL("pivoted.{}").format(sql.Identifier(pivot.alias)) for pivot in pivots)


def _comma(pivots: list[_Pivot]) -> sql.Composable:
    return sql.SQL(",") if pivots else sql.SQL("")


VIEW_DESCRIPTIONS = {
    "current_customer_segments": "Grain: one row per customer of the latest published run. Segment and declared attributes of each customer.",
    "current_segment_profiles": "Grain: one row per segment of the latest published run. Size, averages and shares, name and recommendation.",
    "segment_profile_history": "Grain: one row per segment of every published run, oldest first. Segment sizes and profiles over time.",
}
BUILDERS = {
    "current_customer_segments": customer_segments_sql,
    "current_segment_profiles": segment_profiles_sql,
    "segment_profile_history": profile_history_sql,
}


def view_statements(dataset: Dataset) -> dict[str, tuple[sql.Composed, dict[str, str]]]:
    """Each declaration-following view's CREATE statement and column comments."""
    return {name: builder(dataset) for name, builder in BUILDERS.items()}


def ensure_views(connection: Connection, dataset: Dataset) -> list[str]:
    """(Re)create the declaration-following views whose SQL changed; return their names.

    Runs in the caller's (publish) transaction, so a BI user sees the old views or the new
    ones, never a half-changed set. Comments and the reader's grant come back with each view.
    """
    raw = connection.connection.driver_connection
    recreated = []
    for name, (statement, comments) in view_statements(dataset).items():
        text = statement.as_string(raw)
        signature = hashlib.sha256(text.encode()).hexdigest()
        stored = raw.execute(
            "select signature from segmentation_internal.view_versions where view_name = %s", (name,)
        ).fetchone()
        if stored is not None and stored[0] == signature:
            continue
        view = sql.Identifier(SCHEMA, name)
        raw.execute(sql.SQL("drop view if exists {}").format(view))
        raw.execute(statement)
        raw.execute(sql.SQL("comment on view {} is {}").format(view, sql.Literal(VIEW_DESCRIPTIONS[name])))
        for column, comment in comments.items():
            raw.execute(
                sql.SQL("comment on column {} is {}").format(sql.Identifier(SCHEMA, name, column), sql.Literal(comment))
            )
        raw.execute(sql.SQL("grant select on {} to {}").format(view, sql.Identifier(READER_ROLE)))
        raw.execute(
            "insert into segmentation_internal.view_versions (view_name, signature) values (%s, %s)"
            " on conflict (view_name) do update set signature = excluded.signature, updated_at = now()",
            (name, signature),
        )
        recreated.append(name)
    return recreated
