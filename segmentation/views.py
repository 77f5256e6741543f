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

from psycopg import sql
from sqlalchemy.engine import Connection

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
    statement = sql.SQL(
        "create view segmentation.current_customer_segments with (security_barrier = true) as\n"
        "-- grain: one row per customer of the latest published run" + _LATEST_RUN + "\nselect\n    "
        "{id} as customer_id,\n    assigned.segment_id,\n    profile.segment_name,\n    {attributes},\n"
        "    assigned.distance_to_centroid,\n    assigned.run_id,\n    latest_run.published_at,\n"
        "    assigned.second_segment_id,\n    assigned.margin_to_second,\n    assigned.is_outlier\n"
        "from latest_run\njoin segmentation_internal.customer_segments as assigned\n    on assigned.run_id = latest_run.run_id\n"
        "join segmentation_internal.segment_profiles as profile\n    on profile.run_id = assigned.run_id\n"
        "    and profile.segment_id = assigned.segment_id"
    ).format(id=id_expression, attributes=sql.SQL(",\n    ").join(attributes))
    comments = {
        "customer_id": "The customer's id as in the export (" + ("a whole number" if dataset.id_type == "whole" else "text") + ").",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name, e.g. High income, high spending.",
        "distance_to_centroid": "Distance to the segment centre in scaled units (standard deviations by default).",
        "run_id": "The run that assigned the segment (see run_history).",
        "published_at": "When that run was published.",
        "second_segment_id": "The next-nearest segment.",
        "margin_to_second": "Distance to the second segment minus distance to the own one; small means borderline.",
        "is_outlier": "True beyond Q3 + 3 x IQR of the distances in the segment (far from every centre).",
    }
    for column in dataset.columns:
        comments[column.name] = f"{_describe(column)}, as the run saw it ({column.type})."
    return statement, comments


def _profile_columns(dataset: Dataset) -> tuple[list[_Pivot], list[_Pivot], list[_Pivot], dict[str, str]]:
    """Pivoted feature columns: (averages and shares, medians, indexes, comments)."""
    averages, medians, indexes, comments = [], [], [], {}
    numeric = [column for column in dataset.columns if column.is_numeric]
    for column in numeric:
        averages.append(_pivot(column.name, None, "mean", f"avg_{column.name}"))
        comments[f"avg_{column.name}"] = f"Mean {column.label}" + (f" ({column.unit})." if column.unit else ".")
    shares = _share_columns(dataset)
    for name, column, value in shares:
        averages.append(_pivot(column.name, value, "mean", name))
        comments[name] = f"Share of customers with {column.label} = {value} (0..1)."
    for column in numeric:
        medians.append(_pivot(column.name, None, "median", f"median_{column.name}"))
        comments[f"median_{column.name}"] = f"Median {column.label}" + (f" ({column.unit})." if column.unit else ".")
    for column in numeric:
        indexes.append(_pivot(column.name, None, "index_value", index_name(column)))
        comments[index_name(column)] = f"Segment mean of {column.label} / overall mean x 100 (100 = average)."
    for name, column, value in shares:
        indexes.append(_pivot(column.name, value, "index_value", f"{name}_index"))
        comments[f"{name}_index"] = f"Segment share of {column.label} = {value} / overall share x 100."
    return averages, medians, indexes, comments


class _Pivot(tuple):
    """(the aggregate expression, the column name it gives)."""

    def __new__(cls, expression: sql.Composable, alias: str):
        return super().__new__(cls, (expression, alias))


def _pivot(feature: str, category: str | None, measure: str, alias: str) -> _Pivot:
    category_test = sql.SQL("feature.category is null") if category is None else sql.SQL("feature.category = {}").format(sql.Literal(category))
    expression = sql.SQL("max(feature.{measure}) filter (where feature.feature = {feature} and {category}) as {alias}").format(
        measure=sql.Identifier(measure), feature=sql.Literal(feature), category=category_test, alias=sql.Identifier(alias)
    )
    return _Pivot(expression, alias)


def segment_profiles_sql(dataset: Dataset) -> tuple[sql.Composed, dict[str, str]]:
    """`current_segment_profiles`: fixed columns plus averages, shares, medians and indexes."""
    averages, medians, indexes, feature_comments = _profile_columns(dataset)
    pivots = averages + medians + indexes
    statement = sql.SQL(
        "create view segmentation.current_segment_profiles with (security_barrier = true) as\n"
        "-- grain: one row per segment of the latest published run" + _LATEST_RUN + ",\n"
        "pivoted as (\n    select\n        feature.run_id,\n        feature.segment_id{comma}\n        {pivots}\n"
        "    from segmentation_internal.segment_features as feature\n    where feature.run_id = (select run_id from latest_run)\n"
        "    group by feature.run_id, feature.segment_id\n)\n"
        "select\n    profile.segment_id,\n    profile.segment_name,\n    profile.customer_count,\n    profile.customer_share,\n"
        "    {averages}{comma_a}\n    profile.recommendation,\n    profile.run_id,\n    latest_run.published_at,\n"
        "    {medians}{comma_m}\n    {indexes}{comma_i}\n    profile.distinguishing_features,\n    profile.centroid_shift,\n"
        "    profile.previous_customer_count\n"
        "from latest_run\njoin segmentation_internal.segment_profiles as profile\n    on profile.run_id = latest_run.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id"
    ).format(
        comma=sql.SQL(",") if pivots else sql.SQL(""),
        pivots=sql.SQL(",\n        ").join(pivot[0] for pivot in pivots),
        averages=_select(averages), comma_a=_comma(averages),
        medians=_select(medians), comma_m=_comma(medians),
        indexes=_select(indexes), comma_i=_comma(indexes),
    )
    comments = {
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name from its distinguishing features.",
        "customer_count": "Customers in the segment.",
        "customer_share": "Share of all customers of the run (0..1).",
        "recommendation": "Suggested marketing action for the segment.",
        "run_id": "The run (see run_history).",
        "published_at": "When the run was published.",
        "distinguishing_features": "In words, what sets the segment apart from the average customer.",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        "previous_customer_count": "Customers in the segment in the previous published run.",
        **feature_comments,
    }
    return statement, comments


def profile_history_sql(dataset: Dataset) -> tuple[sql.Composed, dict[str, str]]:
    """`segment_profile_history`: every published run's segments with averages and shares."""
    averages, _, _, feature_comments = _profile_columns(dataset)
    statement = sql.SQL(
        "create view segmentation.segment_profile_history with (security_barrier = true) as\n"
        "-- grain: one row per segment of every published run, oldest first\n"
        "with pivoted as (\n    select\n        feature.run_id,\n        feature.segment_id{comma}\n        {pivots}\n"
        "    from segmentation_internal.segment_features as feature\n    group by feature.run_id, feature.segment_id\n)\n"
        "select\n    runs.run_id,\n    runs.published_at,\n    profile.segment_id,\n    profile.segment_name,\n"
        "    profile.customer_count,\n    profile.customer_share,\n    {averages}{comma_a}\n    profile.centroid_shift\n"
        "from segmentation_internal.runs as runs\njoin segmentation_internal.segment_profiles as profile\n    on profile.run_id = runs.run_id\n"
        "left join pivoted\n    on pivoted.run_id = profile.run_id\n    and pivoted.segment_id = profile.segment_id\n"
        "where runs.status = 'published'\norder by runs.published_at, runs.run_id, profile.segment_id"
    ).format(
        comma=sql.SQL(",") if averages else sql.SQL(""),
        pivots=sql.SQL(",\n        ").join(pivot[0] for pivot in averages),
        averages=_select(averages), comma_a=_comma(averages),
    )
    comments = {
        "run_id": "Published run (see run_history).",
        "published_at": "When the run was published.",
        "segment_id": "Segment number; stable from run to run for matching segments.",
        "segment_name": "Readable segment name.",
        "customer_count": "Customers in the segment in that run.",
        "customer_share": "Share of that run's customers (0..1).",
        "centroid_shift": "How far the segment centre moved since the previous published run (scaled units).",
        **{name: text for name, text in feature_comments.items() if not name.startswith(("median_",)) and not name.endswith("_index")},
    }
    return statement, comments


def _select(pivots: list[_Pivot]) -> sql.Composable:
    """The outer select of pivoted columns: `pivoted.<alias>` for each."""
    aliases = [pivot[1] for pivot in pivots]
    return sql.SQL(",\n    ").join(sql.SQL("pivoted.{}").format(sql.Identifier(alias)) for alias in aliases)


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
