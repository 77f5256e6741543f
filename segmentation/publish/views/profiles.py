"""The views of segments: the latest run's profiles (wide: one column per declared measure) and
features (long: one row per segment x feature), and every published run's profiles over time."""

from __future__ import annotations

from typing import NamedTuple

from psycopg import sql

from segmentation import display, view_columns
from segmentation.dataset import Dataset
from segmentation.publish.views.parts import (
    PUBLISHED_DATE,
    SEGMENT_COMMENTS,
    SEGMENTATION,
    Parts,
    segment_columns,
    share_columns,
)

_ROUNDED = (" Rounded to three significant digits of the run's largest segment value, at least one decimal,"
            " and more where two segments' values would otherwise look the same (at most six).")

# a measure of a features row, as the profile views show it
_MEAN = sql.SQL(display.sql_round("feature.mean", "feature.decimals"))
_MEDIAN = sql.SQL(display.sql_round("feature.median", "feature.decimals"))
_INDEX = sql.SQL(display.sql_round("feature.index_value", "0"))
_SHARE = sql.SQL("feature.mean")
_SHARE_PCT = sql.SQL(display.sql_percent("feature.mean"))


class _Pivot(NamedTuple):
    """The aggregate expression and the column name it gives."""

    expression: sql.Composable
    alias: str


class _Profile(NamedTuple):
    """The pivoted feature columns of the profile views, by kind, with their comments."""

    averages: list[_Pivot]
    shares: list[_Pivot]
    share_pcts: list[_Pivot]
    medians: list[_Pivot]
    indexes: list[_Pivot]
    comments: dict[str, str]


def _pivot(feature: str, category: str | None, measure: sql.Composable, alias: str) -> _Pivot:
    category_test = sql.SQL("feature.category is null") if category is None else sql.SQL("feature.category = {}").format(sql.Literal(category))
    expression = sql.SQL("max({measure}) filter (where feature.feature = {feature} and {category}) as {alias}").format(
        measure=measure, feature=sql.Literal(feature), category=category_test, alias=sql.Identifier(alias)
    )
    return _Pivot(expression, alias)


def _profile_columns(dataset: Dataset) -> _Profile:
    """Pivoted feature columns: averages, shares (0..1 and 0-100), medians, indexes and comments."""
    profile = _Profile([], [], [], [], [], {})
    comments = profile.comments
    for column in (column for column in dataset.columns if column.is_numeric):
        unit = f" ({column.unit})." if column.unit else "."
        average, median, index = (name(column) for name in (
            view_columns.average_name, view_columns.median_name, view_columns.index_name))
        profile.averages.append(_pivot(column.name, None, _MEAN, average))
        comments[average] = f"Mean {column.label}{unit}{_ROUNDED}"
        profile.medians.append(_pivot(column.name, None, _MEDIAN, median))
        comments[median] = f"Median {column.label}{unit}{_ROUNDED}"
        profile.indexes.append(_pivot(column.name, None, _INDEX, index))
        comments[index] = f"Segment mean of {column.label} / overall mean x 100 (100 = average), whole number."
    for name, column, value in share_columns(dataset):
        profile.shares.append(_pivot(column.name, value, _SHARE, name))
        comments[name] = f"Share of customers with {column.label} = {value} (0..1)."
        profile.share_pcts.append(_pivot(column.name, value, _SHARE_PCT, f"{name}_pct"))
        comments[f"{name}_pct"] = f"Percentage of customers with {column.label} = {value} (0-100, one decimal)."
        profile.indexes.append(_pivot(column.name, value, _INDEX, f"{name}_index"))
        comments[f"{name}_index"] = f"Segment share of {column.label} = {value} / overall share x 100, whole number."
    return profile


_PARTITION = "feature.run_id, feature.feature, feature.category"


def _features(where: sql.Composable) -> sql.Composable:
    """The CTEs `gaps` and `features`: segment_features rows (`where`) with the decimals their
    averages are shown with (`display.sql_decimals`, which needs each mean's gap to the next)."""
    return sql.SQL(
        "gaps as (\n    select\n        feature.*,\n        {gap} as gap\n"
        "    from segmentation_internal.segment_features as feature\n    where {where}\n),\n"
        "features as (\n    select\n        feature.*,\n        {decimals} as decimals\n"
        "    from gaps as feature\n)"
    ).format(
        gap=sql.SQL(display.sql_gap("feature.mean", _PARTITION)),
        decimals=sql.SQL(display.sql_decimals("feature.mean", "feature.gap", _PARTITION)),
        where=where,
    )


def _pivoted(pivots: list[_Pivot]) -> sql.Composable:
    """The CTE `pivoted`: one row per run and segment with the `pivots` as columns."""
    return sql.SQL(
        "pivoted as (\n    select\n        feature.run_id,\n        feature.segment_id{comma}\n        {pivots}\n"
        "    from features as feature\n    group by feature.run_id, feature.segment_id\n)"
    ).format(comma=_comma(pivots), pivots=sql.SQL(",\n        ").join(pivot.expression for pivot in pivots))


def _select(pivots: list[_Pivot]) -> sql.Composable:
    """The outer select of pivoted columns: `pivoted.<alias>` for each."""
    return sql.SQL(",\n    ").join(sql.SQL("pivoted.{}").format(sql.Identifier(pivot.alias)) for pivot in pivots)


def _comma(pivots: list) -> sql.Composable:
    return sql.SQL(",") if pivots else sql.SQL("")


def segment_profiles_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`current_segment_profiles`: fixed columns plus averages, shares, medians and indexes."""
    profile = _profile_columns(parts.dataset)
    shown = profile.averages + profile.shares + profile.share_pcts
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per segment of the latest published run\n"
        "with {latest_run},\n{features},\n{pivoted}\n"
        "select\n    profile.segment_id,\n    profile.segment_name,\n    {segment_columns},\n"
        "    profile.customer_count,\n    profile.customer_share,\n    {share_pct} as customer_share_pct,\n"
        "    {shown}{comma_s}\n    profile.recommendation,\n    profile.run_id,\n    latest_run.published_at,\n"
        "    cast(latest_run.published_at as date) as published_date,\n"
        "    {medians}{comma_m}\n    {indexes}{comma_i}\n    profile.distinguishing_features,\n    profile.centroid_shift,\n"
        "    profile.previous_customer_count\n"
        "from latest_run\njoin segmentation_internal.segment_profiles as profile\n    on profile.run_id = latest_run.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id"
    ).format(
        view=parts.view("current_segment_profiles"), latest_run=parts.latest_run(),
        features=_features(sql.SQL("feature.run_id = (select run_id from latest_run)")),
        pivoted=_pivoted(shown + profile.medians + profile.indexes),
        segment_columns=segment_columns(" " * 4),
        share_pct=sql.SQL(display.sql_percent("profile.customer_share")),
        shown=_select(shown), comma_s=_comma(shown),
        medians=_select(profile.medians), comma_m=_comma(profile.medians),
        indexes=_select(profile.indexes), comma_i=_comma(profile.indexes),
    )
    comments = {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name from its distinguishing features.",
        **SEGMENT_COMMENTS,
        "customer_count": "Customers in the segment.",
        "customer_share": "Share of all customers of the run (0..1).",
        "customer_share_pct": "Percentage of all customers of the run (0-100, one decimal, as segment run prints it).",
        "recommendation": "Suggested marketing action for the segment.",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
        "published_date": PUBLISHED_DATE,
        "distinguishing_features": "In words, what sets the segment apart from the average customer.",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        "previous_customer_count": "Customers in the segment in the previous published run.",
        **profile.comments,
    }
    return statement, comments


def segment_features_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`current_segment_features`: one row per segment x feature (x category), long format."""
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per segment x feature (x category) of the latest published run\n"
        "with {latest_run},\n{features}\n"
        "select\n    feature.segment_id,\n    profile.segment_name,\n    {segment_columns},\n"
        "    feature.feature,\n    feature.label,\n    feature.unit,\n    feature.category,\n"
        "    {mean} as mean,\n    case when feature.category is not null then {share_pct} end as share_pct,\n"
        "    {median} as median,\n    {index} as index,\n    feature.level,\n    feature.position,\n"
        "    feature.run_id,\n    latest_run.published_at,\n    cast(latest_run.published_at as date) as published_date\n"
        "from latest_run\njoin features as feature\n    on feature.run_id = latest_run.run_id\n"
        "join segmentation_internal.segment_profiles as profile\n    on profile.run_id = feature.run_id\n"
        "    and profile.segment_id = feature.segment_id"
    ).format(
        view=parts.view("current_segment_features"), latest_run=parts.latest_run(),
        features=_features(sql.SQL("feature.run_id = (select run_id from latest_run)")),
        segment_columns=segment_columns(" " * 4), mean=_MEAN, share_pct=_SHARE_PCT, median=_MEDIAN, index=_INDEX,
    )
    comments = {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        **SEGMENT_COMMENTS,
        "feature": "Declared column name of the feature.",
        "label": "Readable label of the feature.",
        "unit": "Unit of the feature's values (empty for categories and booleans).",
        "category": "For a category or boolean feature: the category; NULL for numbers.",
        "mean": "Mean in original units; for a category, the share of the segment's customers in it (0..1)." + _ROUNDED,
        "share_pct": "For a category: the percentage of the segment's customers in it (0-100, one decimal); NULL for numbers.",
        "median": "Median in original units (numbers only), rounded as mean.",
        "index": "Segment mean (or share) / overall mean (or share) x 100; 100 = average. Whole number.",
        "level": "low, average or high: the segment against all customers.",
        "position": "Order of the row within the segment (declaration order).",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
        "published_date": PUBLISHED_DATE,
    }
    return statement, comments


def profile_history_sql(parts: Parts) -> tuple[sql.Composed, dict[str, str]]:
    """`segment_profile_history`: every published run's segments with averages and shares (this
    segmentation's declared columns; in a cross view, other segmentations' rows have them null)."""
    profile = _profile_columns(parts.dataset)
    shown = profile.averages + profile.shares + profile.share_pcts
    statement = sql.SQL(
        "create view {view} with (security_barrier = true) as\n"
        "-- grain: one row per segment of every published run, oldest first\n"
        "with published as (\n    select\n        runs.run_id,\n        runs.segmentation_id,\n"
        "        runs.published_at,\n        cast(runs.published_at as date) as published_date,\n"
        "        row_number() over (partition by runs.segmentation_id, cast(runs.published_at as date)"
        " order by runs.published_at desc, runs.run_id desc) = 1 as is_latest_of_day\n"
        "    from segmentation_internal.runs as runs\n    where runs.status = 'published' and {runs_filter}\n),\n"
        "{features},\n{pivoted}\n"
        "select\n    segmentations.name as segmentation,\n    published.run_id,\n    published.published_at,\n"
        "    published.published_date,\n    published.is_latest_of_day,\n    profile.segment_id,\n"
        "    profile.segment_name,\n    {segment_columns},\n"
        "    profile.customer_count,\n    profile.customer_share,\n    {share_pct} as customer_share_pct,\n"
        "    {shown}{comma_s}\n    profile.centroid_shift\n"
        "from published\njoin segmentation_internal.segmentations as segmentations\n"
        "    on segmentations.segmentation_id = published.segmentation_id\n"
        "join segmentation_internal.segment_profiles as profile\n    on profile.run_id = published.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id\n"
        "order by published.published_at, published.run_id, profile.segment_id"
    ).format(
        view=parts.view("segment_profile_history"), runs_filter=parts.runs_filter("runs"),
        features=_features(sql.SQL(
            "feature.run_id in (select run_id from published where segmentation_id = {})"
        ).format(parts.segmentation_id)),
        pivoted=_pivoted(shown),
        segment_columns=segment_columns(" " * 4),
        share_pct=sql.SQL(display.sql_percent("profile.customer_share")),
        shown=_select(shown), comma_s=_comma(shown),
    )
    comments = {
        "segmentation": SEGMENTATION,
        "run_id": "Published run (see run_history).",
        "published_at": "When the run was published.",
        "published_date": PUBLISHED_DATE,
        "is_latest_of_day": "True for the segmentation's last run published on its published_date: filter on it for one"
        " run per day.",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        **SEGMENT_COMMENTS,
        "customer_count": "Customers in the segment in that run.",
        "customer_share": "Share of that run's customers (0..1).",
        "customer_share_pct": "Percentage of that run's customers (0-100, one decimal).",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        **{name: profile.comments[name] for name in (pivot.alias for pivot in shown)},
    }
    return statement, comments


