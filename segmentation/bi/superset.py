"""A Superset import bundle of the BI views: one database, and for every segmentation a dataset
per view, charts and a dashboard with native filters (published date, segment).

The bundle is the zip layout and YAML (version 1.0.0) that `superset import-dashboards` and
the UI's dashboard import read: `<root>/metadata.yaml`, `databases/`, `datasets/<database>/`,
`charts/`, `dashboards/`. Views, columns and their comments are read from the database at
export time (`read_views`), so the datasets follow the declaration of the running job:
a dataset's description is its view's COMMENT, a column's description its column's COMMENT,
and its verbose name a readable title (declared labels and units where the column is one).

Every segmentation gets its own dashboard on its own views (schema `segmentation` for the
default one, `segments_NAME` for the others; see docs/segmentations.md), read under its own
stored declaration; charts on the cross-segmentation views of schema `segmentation` (rows of
every segmentation, a `segmentation` column) keep to their dashboard's segmentation. Segments
are shown as "S<id> <full name>" everywhere (a calculated column `segment` of each dataset
with segment_id and segment_name), never cut at the first comma. docs/dashboards.md shows them.

UUIDs are derived from the database's name and the object's name, so importing a newer
bundle of the same database never adds copies (Superset 6.1's dashboard import overwrites the
dashboards but keeps charts and datasets it already has: delete those first). The database
entry carries Superset's password mask: the password is typed in Superset after import.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import re
import uuid
import zipfile
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from segmentation.dataset import Dataset, from_description
from segmentation.errors import SegmentationError
from segmentation.palette import segment_color

SCHEMA = "segmentation"
DEFAULT = "default"  # the segmentation without a name; its views are in SCHEMA
SEGMENT = "segment"  # the calculated column every chart shows a segment by: "S<id> <name>"
COMPARED = "every segmentation"  # the dashboard of them all (not a segmentation's name: those have no space)
VERSION = "1.0.0"  # Superset's import/export format
PASSWORD_MASK = "XXXXXXXXXX"  # what Superset writes for a password in its own exports
# Superset refuses a masked password without a `password` field ("Must provide a password"),
# and `superset import-dashboards` cannot ask for one: the bundle carries this placeholder,
# replaced in Superset after the import (Settings > Database Connections > edit).
PASSWORD_PLACEHOLDER = "change-me"
DASHBOARD_TITLE = "Customer segments"
_NAMESPACE = uuid.UUID("5b0e7f3c-2d7e-4c55-9a55-7d1f3f0c2a11")
_TIME_TYPES = ("timestamp", "date")
LEGEND_WIDTH = 290  # px for a legend on the right: "S1 Average income, average spending" unabridged
PIE_LEGEND_WIDTH = 250  # the pie's legend needs no room for a line marker
HELD_COLOR = "#D1495B"  # held nights and the hold line
STATUS_COLORS = {"held": HELD_COLOR, "published": "#1F77B4"}  # the run charts' series, by run_history.status
#: each segmentation's series on the dashboard of every segmentation, in order (red stays for held runs)
SEGMENTATION_COLORS = ("#1F77B4", "#2CA02C", "#9467BD", "#8C564B", "#17BECF", "#7F7F7F", "#BCBD22", "#E377C2")


@dataclasses.dataclass(frozen=True)
class ViewColumn:
    name: str
    type: str  # as PostgreSQL's format_type spells it: "bigint", "timestamp with time zone"
    comment: str | None


@dataclasses.dataclass(frozen=True)
class View:
    name: str
    comment: str | None
    columns: tuple[ViewColumn, ...]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


def read_views(connection: Connection, schema: str = SCHEMA) -> dict[str, View]:
    """Every view of `schema` with its comment and its columns (name, type, comment), by name."""
    views = connection.execute(
        sa.text(
            "select c.oid, c.relname, obj_description(c.oid, 'pg_class') as comment"
            " from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname = :schema and c.relkind in ('v', 'm') order by c.relname"
        ),
        {"schema": schema},
    ).all()
    found = {}
    for view in views:
        columns = connection.execute(
            sa.text(
                "select a.attname, format_type(a.atttypid, a.atttypmod) as type,"
                " col_description(a.attrelid, a.attnum) as comment"
                " from pg_catalog.pg_attribute as a"
                " where a.attrelid = :oid and a.attnum > 0 and not a.attisdropped order by a.attnum"
            ),
            {"oid": view.oid},
        ).all()
        found[view.relname] = View(view.relname, view.comment,
                                   tuple(ViewColumn(c.attname, c.type, c.comment) for c in columns))
    return found


def segment_text(segment_id: int, segment_name: str) -> str:
    """How the dashboard shows a segment: its id and full name, "S3 Low income, high spending"
    (the SQL of the `segment` column says the same)."""
    return f"S{segment_id} {segment_name}"


def _segment_expression() -> str:
    return "'S' || segment_id || ' ' || segment_name"


def segment_labels(connection: Connection, views: dict[str, View], schema: str = SCHEMA,
                   segmentation: str = DEFAULT) -> dict[str, int]:
    """Each label a chart shows for a segment -> its segment id, so the dashboard can give every
    label its segment's colour (`palette.segment_color`, as in the report).

    Labels are "S<id> <name>" of every segment of every published run (the `segment` column),
    and the run-prefixed labels of the transitions views, read from `schema`'s views (only
    `segmentation`'s rows of a cross view); the latest run wins a repeated name.
    """
    queries = {  # view -> (label expression, id column): constant SQL only
        "segment_profile_history": [(_segment_expression(), "segment_id")],
        "segment_transitions": [("from_label", "from_segment_id"), ("to_label", "to_segment_id")],
        "segment_transitions_history": [("from_label", "from_segment_id"), ("to_label", "to_segment_id")],
    }
    labels: dict[str, int] = {}
    for view_name, pairs in queries.items():
        view = views.get(view_name)
        if view is None:
            continue
        for label, segment_id in pairs:
            needed = {segment_id, "segment_name"} if label == _segment_expression() else {label, segment_id}
            if not needed <= set(view.column_names):
                continue
            order = " order by run_id" if "run_id" in view.column_names else ""
            mine = " and segmentation = :segmentation" if "segmentation" in view.column_names else ""
            rows = connection.execute(sa.text(
                f"select {label} as label, {segment_id} as segment_id from {_quoted(schema)}.{view_name}"
                f" where {segment_id} is not null{mine}{order}"
            ), {"segmentation": segmentation}).all()
            labels.update({str(row.label): int(row.segment_id) for row in rows if row.label is not None})
    return labels


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """One segmentation of the database: its name, the schema of its views, its declaration."""

    name: str
    schema: str
    dataset: Dataset

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT


def read_segmentations(connection: Connection, fallback: Dataset) -> list[Segmentation]:
    """Every segmentation with views, the default one first, each under its stored declaration
    (`fallback` for the default one when none is stored yet, as on a database older than named
    segmentations)."""
    stored = []
    if connection.execute(sa.text("select to_regclass('segmentation_internal.segmentations')")).scalar():
        stored = connection.execute(sa.text(
            "select name, declaration from segmentation_internal.segmentations order by name <> 'default', name"
        )).all()
    found = {row.name: (row.declaration or {}).get("dataset") for row in stored}
    segmentations = []
    if DEFAULT in found or not found:
        declared = found.get(DEFAULT)
        segmentations.append(Segmentation(DEFAULT, SCHEMA, from_description(declared) if declared else fallback))
    segmentations += [Segmentation(name, f"segments_{name}", from_description(declared))
                      for name, declared in found.items() if name != DEFAULT]
    return segmentations


# --- readable column titles ------------------------------------------------------------------

_TITLES = {
    "customer_id": "Customer id", "segment_id": "Segment id", "segment_name": "Segment",
    "segment_label": "Segment (short)", "segment_order": "Segment order", "segment_color": "Segment colour",
    "customer_count": "Customers", "customer_share": "Share of customers (0-1)",
    "customer_share_pct": "Share of customers (%)", "published_date": "Published on",
    "n_customers": "Customers", "k": "Segments (k)", "silhouette": "Silhouette (-1 to 1, higher = clearer)",
    "size_psi": "Segment size drift (PSI)", "max_centroid_shift": "Largest centre shift",
    "n_outliers": "Outliers", "is_outlier": "Outlier", "distance_to_centroid": "Distance to segment centre",
    "margin_to_second": "Margin to second-nearest segment", "second_segment_id": "Second-nearest segment id",
    "recommendation": "Recommendation", "distinguishing_features": "What sets it apart",
    "previous_customer_count": "Customers in the previous run", "centroid_shift": "Centre shift",
    "index": "Index (100 = average)", "mean": "Mean (share for a category)",
    "run_id": "Run", "from_run_id": "From run", "to_run_id": "To run",
    "share_of_from_segment": "Share of the previous segment (0-1)",
    "share_of_from_segment_pct": "Share of the previous segment (%)",
    "from_label": "From (run: segment)", "to_label": "To (run: segment)",
}


def column_title(name: str, dataset: Dataset) -> str:
    """A readable title for view column `name`: declared labels and units where it is a declared
    column or a statistic of one (avg_, median_), a fixed title for the job's own columns, else
    the name in words."""
    declared = {column.name: column for column in dataset.columns}
    for prefix, word in (("avg_", "Average "), ("median_", "Median ")):
        if name.startswith(prefix) and name[len(prefix):] in declared:
            return word + declared[name[len(prefix):]].axis_label
    if name in declared:
        label = declared[name].axis_label
        return label[:1].upper() + label[1:]
    if name in _TITLES:
        return _TITLES[name]
    words = name.replace("_", " ").replace(" pct", " (%)").replace("avg ", "average ")
    return words[:1].upper() + words[1:]


# --- the bundle's objects --------------------------------------------------------------------


def _uuid(database: str, kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{database}/{kind}/{name}"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def database_name(url: sa.URL) -> str:
    """The Superset name of the database entry; Superset names must be unique, so it names the database."""
    return f"Customer segments ({url.database or 'postgres'})"


def database_config(url: sa.URL, user: str, database_uuid: str) -> dict[str, Any]:
    """Superset's database entry: the job's host, port and database, `user`, a placeholder password."""
    uri = sa.URL.create("postgresql+psycopg2", user, PASSWORD_MASK, url.host or "DBHOST", url.port or 5432,
                        url.database)
    return {
        "database_name": database_name(url), "sqlalchemy_uri": uri.render_as_string(hide_password=False),
        "password": PASSWORD_PLACEHOLDER,
        "cache_timeout": None, "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False,
        "allow_cvas": False, "allow_dml": False, "allow_csv_upload": False, "extra": {},
        "uuid": database_uuid, "version": VERSION,
    }


def dataset_key(schema: str, view: str) -> str:
    """The dataset's name in UUIDs: the view name in the default schema (as bundles before named
    segmentations had it, so they update), schema.view elsewhere."""
    return view if schema == SCHEMA else f"{schema}.{view}"


def dataset_config(view: View, dataset: Dataset, database: str, database_uuid: str,
                   schema: str = SCHEMA) -> dict[str, Any]:
    """One dataset of `view` in `schema`: its comment as description, each column titled and
    described, and the calculated column `segment` ("S<id> <full name>") where the view has
    segment_id and segment_name."""
    columns = [{
        "column_name": column.name, "verbose_name": column_title(column.name, dataset),
        "description": column.comment, "type": column.type.upper(),
        "is_dttm": column.type.startswith(_TIME_TYPES), "is_active": True, "groupby": True, "filterable": True,
        "expression": None, "python_date_format": None, "advanced_data_type": None, "extra": {},
    } for column in view.columns]
    if {"segment_id", "segment_name"} <= set(view.column_names) and SEGMENT not in view.column_names:
        columns.append({
            "column_name": SEGMENT, "verbose_name": "Segment (id and name)",
            "description": "S<segment_id> and the segment's full name: what every chart's legend shows.",
            "type": "TEXT", "is_dttm": False, "is_active": True, "groupby": True, "filterable": True,
            "expression": _segment_expression(), "python_date_format": None, "advanced_data_type": None, "extra": {},
        })
    times = [column.name for column in view.columns if column.type.startswith(_TIME_TYPES)]
    # Superset on its default SQLite metadata keeps table names unique across schemas, so the views
    # of a named segmentation (the same names in segments_NAME) are virtual datasets named apart.
    named = schema != SCHEMA
    return {
        "table_name": f"{view.name} ({schema.removeprefix('segments_')})" if named else view.name,
        "schema": schema, "description": view.comment,
        "main_dttm_col": "published_at" if "published_at" in times else (times[0] if times else None),
        "default_endpoint": None, "offset": 0, "cache_timeout": None,
        "sql": f"select * from {_quoted(schema)}.{_quoted(view.name)}" if named else None, "params": None,
        "template_params": None, "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None,
        "uuid": _uuid(database, "dataset", dataset_key(schema, view.name)),
        "metrics": [{"metric_name": "count", "verbose_name": "Rows", "metric_type": "count",
                     "expression": "COUNT(*)", "description": None, "d3format": None, "extra": None,
                     "warning_text": None}],
        "columns": columns, "version": VERSION, "database_uuid": database_uuid,
    }


# --- charts ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Chart:
    """A chart of the dashboard: its view, Superset's viz type and form data, the view columns it
    reads, and whether the dashboard's published-date filter applies to it (charts of the latest
    run only are left out of its scope)."""

    title: str
    view: str
    viz_type: str
    params: dict[str, Any]
    columns: tuple[str, ...]
    description: str
    width: int = 6  # of the dashboard grid's 12 columns
    over_time: bool = False


def _metric(column: str, aggregate: str, label: str) -> dict[str, Any]:
    return {"expressionType": "SIMPLE", "column": {"column_name": column}, "aggregate": aggregate,
            "label": label, "hasCustomLabel": True, "optionName": f"metric_{column}_{aggregate.lower()}"}


def _sql_metric(expression: str, label: str) -> dict[str, Any]:
    return {"expressionType": "SQL", "sqlExpression": expression, "label": label, "hasCustomLabel": True,
            "optionName": f"metric_{_slug(label).lower()}"}


def _where(expression: str) -> dict[str, Any]:
    return {"expressionType": "SQL", "clause": "WHERE", "sqlExpression": expression}


def _temporal_range(column: str) -> dict[str, Any]:
    """The chart's time filter on `column`: the dashboard's published-date filter sets its range."""
    return {"expressionType": "SIMPLE", "subject": column, "operator": "TEMPORAL_RANGE", "comparator": "No filter",
            "clause": "WHERE", "sqlExpression": None, "isExtra": False, "isNew": False,
            "datasourceWarning": False, "filterOptionName": f"filter_{column}_temporal_range"}


def _segment_column(view: View) -> str:
    """The calculated "S<id> <full name>" column once the view has segment ids and names; else the name."""
    return SEGMENT if {"segment_id", "segment_name"} <= set(view.column_names) else "segment_name"


def _percent_columns(view: View) -> list[str]:
    return [name for name in view.column_names if name.endswith(("_pct", "_percent"))]


def _timeseries(x_axis: str, metrics: list, groupby: list[str], viz_type: str, x_title: str,
                y_title: str, y_format: str = "SMART_NUMBER") -> dict[str, Any]:
    """A line or bar chart; a time `x_axis` is a real time axis (dates spaced as they are), any
    other a category axis."""
    return {
        "x_axis": x_axis, "metrics": metrics, "groupby": groupby, "adhoc_filters": [], "row_limit": 10000,
        "x_axis_sort_asc": True, "show_legend": True, "legendType": "plain", "legendOrientation": "top",
        "x_axis_title": x_title, "x_axis_title_margin": 30, "y_axis_title": y_title, "y_axis_title_margin": 50,
        "y_axis_title_position": "Left", "y_axis_format": y_format, "rich_tooltip": True, "markerEnabled": True,
        "markerSize": 8, "x_axis_time_format": "%Y-%m-%d", "truncateYAxis": False,
        "color_scheme": "supersetColors", "viz_type": viz_type,
    }


def _threshold(name: str, value: float) -> dict[str, Any]:
    """A dashed horizontal line at `value` (Superset's formula annotation layer)."""
    return {"name": name, "annotationType": "FORMULA", "sourceType": "", "value": f"{value:g}", "overrides": {},
            "show": True, "showLabel": True, "showMarkers": False, "hideLine": False, "titleColumn": "",
            "descriptionColumns": [], "timeColumn": "", "intervalEndColumn": "",
            "color": HELD_COLOR, "opacity": "opacityMedium", "style": "dashed", "width": 1}


def _number_formats(view: View, shown: list[str]) -> dict[str, dict[str, str]]:
    """Table cells as people read them: shares as percentages, averages to one decimal."""
    formats = {}
    for column in view.columns:
        if column.name not in shown or not column.type.startswith(("numeric", "double", "real")):
            continue
        formats[column.name] = {"d3NumberFormat": ".1%" if column.name.endswith("_share") else ",.1f"}
    return formats


def plan_charts(views: dict[str, View], segmentation: str = DEFAULT, max_size_psi: float = 0.25) -> list[Chart]:
    """The dashboard's charts, for the views that exist: segment sizes, feature indexes, profile
    table, sizes over time, silhouette and size drift per night (held nights marked), the nights
    table, and the transitions Sankey.

    Charts on a view with a `segmentation` column (the cross views of schema `segmentation`)
    keep to `segmentation`'s rows; `max_size_psi` draws the hold line on the drift chart.
    """
    charts = []

    def mine(view: View) -> list[dict[str, Any]]:
        if "segmentation" not in view.column_names:
            return []
        return [_where(f"segmentation = '{segmentation.replace(chr(39), chr(39) * 2)}'")]

    profiles = views.get("current_segment_profiles")
    if profiles is not None:
        segment = _segment_column(profiles)
        share = ("sum(customer_share_pct) / 100" if "customer_share_pct" in profiles.column_names
                 else "sum(customer_share)")  # the view's rounding (one decimal), shown as a percentage
        charts.append(Chart(
            "Segment sizes", profiles.name, "pie",
            {"groupby": [segment], "metric": _sql_metric(share, "Share of customers"),
             "adhoc_filters": mine(profiles), "row_limit": 100, "sort_by_metric": True, "show_labels": True,
             "label_type": "value", "labels_outside": False, "label_line": False, "show_legend": True,
             "legendType": "plain", "legendOrientation": "right", "legendMargin": PIE_LEGEND_WIDTH, "legendSort": "asc",
             "innerRadius": 0, "outerRadius": 80,
             "number_format": ".1%", "show_total": False, "color_scheme": "supersetColors", "viz_type": "pie"},
            ("segment_id", "segment_name",
             "customer_share_pct" if "customer_share_pct" in profiles.column_names else "customer_share"),
            "Share of customers per segment of the latest published run, in percent with one decimal as the"
            " view's customer_share_pct.", width=5))
    features = views.get("current_segment_features")
    if features is not None:
        segment = _segment_column(features)
        params = _timeseries("label", [_metric("index", "MAX", "Index")], [segment], "echarts_timeseries_bar",
                             "", "Index (100 = average)")  # horizontal: features down the side, indexes across
        params.update(adhoc_filters=[_where("category IS NULL"), *mine(features)], orientation="horizontal",
                      legendOrientation="right",
                      legendMargin=LEGEND_WIDTH, legendSort="asc")
        charts.append(Chart(
            "Feature indexes (100 = average customer)", features.name, "echarts_timeseries_bar", params,
            ("label", "index", "segment_id", "segment_name", "category"),
            "Each segment's mean of every numeric feature against all customers' mean (= 100).", width=7))
    if profiles is not None:  # full width, under the two small charts
        shown = ["segment_id", "segment_name", "customer_count", *(_percent_columns(profiles) or ["customer_share"])]
        shown += [name for name in profiles.column_names if name.startswith("avg_")] + ["recommendation"]
        shown = [name for name in dict.fromkeys(shown) if name in profiles.column_names]
        charts.append(Chart(
            "Segment profiles", profiles.name, "table",
            {"query_mode": "raw", "all_columns": shown, "order_by_cols": [], "groupby": [],
             "adhoc_filters": mine(profiles), "row_limit": 1000, "server_page_length": 20,
             "show_cell_bars": False, "viz_type": "table", "column_config": _number_formats(profiles, shown)},
            tuple(shown), "One row per segment: size, averages and the recommended action.", width=12))
    history = views.get("segment_profile_history")
    if history is not None:
        segment = _segment_column(history)
        params = _timeseries("published_date", [_metric("customer_count", "SUM", "Customers")], [segment],
                             "echarts_timeseries_line", "Published on", "Customers")
        params.update(time_grain_sqla="P1D", legendOrientation="right", legendMargin=LEGEND_WIDTH, legendSort="asc",
                      adhoc_filters=[
            _temporal_range("published_date"), _where("is_latest_of_day"), *mine(history)])
        charts.append(Chart(
            "Segment sizes over time", history.name, "echarts_timeseries_line", params,
            ("published_date", "customer_count", "segment_id", "segment_name", "is_latest_of_day"),
            "Customers per segment by the day its run was published (the day's last run).", width=12,
            over_time=True))
    runs = views.get("run_history")
    if runs is not None:
        base = [_temporal_range("started_at"), _where("status in ('published', 'held')"), *mine(runs)]
        silhouette = _timeseries("started_at", [_metric("silhouette", "MAX", "Silhouette")], ["status"],
                                 "echarts_timeseries_line", "Night (the day the run started)", "Silhouette", ".2f")
        silhouette.update(adhoc_filters=base, time_grain_sqla="P1D")
        charts.append(Chart(
            "Silhouette per night", runs.name, "echarts_timeseries_line", silhouette,
            ("started_at", "silhouette", "status"),
            "Mean silhouette of every published and held run (-1 to 1, higher = clearer segments); held runs"
            " are their own series.", over_time=True))
        drift = _timeseries("started_at", [_metric("size_psi", "MAX", "Size drift (PSI)")], ["status"],
                            "echarts_timeseries_line", "Night (the day the run started)", "PSI", ".2f")
        drift.update(adhoc_filters=base, time_grain_sqla="P1D",
                     annotation_layers=[_threshold(f"held above {max_size_psi:g}", max_size_psi)])
        charts.append(Chart(
            "Segment size drift (PSI) per night", runs.name, "echarts_timeseries_line", drift,
            ("started_at", "size_psi", "status"),
            f"Population stability index of segment sizes against the previous published run; above"
            f" {max_size_psi:g} (dashed line) a run is held. Held runs are their own series.", over_time=True))
        shown = [name for name in ("run_id", "started_at", "status", "k", "silhouette", "size_psi", "n_customers",
                                   "error") if name in runs.column_names]
        charts.append(Chart(
            "Nights", runs.name, "table",
            {"query_mode": "raw", "all_columns": shown, "order_by_cols": ['["run_id", false]'], "groupby": [],
             "adhoc_filters": [_temporal_range("started_at"), *mine(runs)], "row_limit": 1000,
             "server_page_length": 10, "show_cell_bars": False, "viz_type": "table",
             "column_config": {"silhouette": {"d3NumberFormat": ".3f"}, "size_psi": {"d3NumberFormat": ".3f"}},
             "table_timestamp_format": "%Y-%m-%d %H:%M"},
            tuple(shown), "Every run, newest first: held and failed ones with the reason.", width=12, over_time=True))
    transitions = views.get("segment_transitions_history") or views.get("segment_transitions")
    if transitions is not None:
        when = "to_published_date" if "to_published_date" in transitions.column_names else None
        charts.append(Chart(
            "Customers moving between segments", transitions.name, "sankey_v2",
            {"source": "from_label", "target": "to_label", "metric": _metric("customer_count", "SUM", "Customers"),
             "adhoc_filters": [*([_temporal_range(when)] if when else []), *mine(transitions)],
             "row_limit": 10000, "color_scheme": "supersetColors", "viz_type": "sankey_v2"},
            ("from_label", "to_label", "customer_count"),
            "Where the customers of each segment went between published runs (filter the published date"
            " to see fewer runs).", width=12, over_time=when is not None))
    return charts


def plan_compared_charts(views: dict[str, View], max_size_psi: float = 0.25) -> list[Chart]:
    """The charts of the dashboard of every segmentation, on the cross views of schema
    `segmentation` (rows of every segmentation, a `segmentation` column): customers per
    segmentation over time, silhouette and drift per night of each (held runs their own
    series), and every night of every segmentation."""
    charts = []
    history, runs = views.get("segment_profile_history"), views.get("run_history")
    if history is not None and "segmentation" in history.column_names:
        params = _timeseries("published_date", [_metric("customer_count", "SUM", "Customers")], ["segmentation"],
                             "echarts_timeseries_line", "Published on", "Customers")
        params.update(time_grain_sqla="P1D", legendOrientation="right", legendMargin=LEGEND_WIDTH, legendSort="asc",
                      adhoc_filters=[_temporal_range("published_date"), _where("is_latest_of_day")])
        charts.append(Chart(
            "Customers per segmentation over time", history.name, "echarts_timeseries_line", params,
            ("published_date", "customer_count", "segmentation", "is_latest_of_day"),
            "Customers segmented by each segmentation, by the day its run was published.", width=12, over_time=True))
    if runs is not None and "segmentation" in runs.column_names:
        base = [_temporal_range("started_at"), _where("status in ('published', 'held')")]
        for title, column, label, extra in (
            ("Silhouette per night, every segmentation", "silhouette", "Silhouette", {}),
            ("Segment size drift (PSI) per night, every segmentation", "size_psi", "PSI",
             {"annotation_layers": [_threshold(f"held above {max_size_psi:g}", max_size_psi)]}),
        ):
            params = _timeseries("started_at", [_metric(column, "MAX", label)], ["segmentation", "status"],
                                 "echarts_timeseries_line", "Night (the day the run started)", label, ".2f")
            params.update(adhoc_filters=base, time_grain_sqla="P1D", **extra)
            charts.append(Chart(title, runs.name, "echarts_timeseries_line", params,
                                ("started_at", column, "segmentation", "status"),
                                f"{label} of every published and held run of each segmentation; a series per"
                                " segmentation and status (held runs in red).", over_time=True))
        shown = [name for name in ("segmentation", "run_id", "started_at", "status", "k", "silhouette", "size_psi",
                                   "n_customers", "error") if name in runs.column_names]
        charts.append(Chart(
            "Nights of every segmentation", runs.name, "table",
            {"query_mode": "raw", "all_columns": shown, "order_by_cols": ['["run_id", false]'], "groupby": [],
             "adhoc_filters": [_temporal_range("started_at")], "row_limit": 1000, "server_page_length": 15,
             "show_cell_bars": False, "viz_type": "table", "table_timestamp_format": "%Y-%m-%d %H:%M",
             "column_config": {"silhouette": {"d3NumberFormat": ".3f"}, "size_psi": {"d3NumberFormat": ".3f"}}},
            tuple(shown), "Every run of every segmentation, newest first, with the reason for held and failed ones.",
            width=12, over_time=True))
    return charts


def chart_config(chart: Chart, database: str, datasets: dict[str, dict], key: str = "") -> dict[str, Any]:
    """Superset's chart entry; `key` tells the charts of one segmentation's dashboard from another's."""
    dataset_uuid = datasets[chart.view]["uuid"]
    return {
        "slice_name": chart.title, "description": chart.description, "certified_by": None,
        "certification_details": None, "viz_type": chart.viz_type,
        "params": {"annotation_layers": [], **chart.params, "datasource": f"{chart.view}__table",
                   "extra_form_data": {}, "dashboards": []},
        "query_context": None, "cache_timeout": None, "uuid": _uuid(database, "chart", key + chart.title),
        "version": VERSION, "dataset_uuid": dataset_uuid,
    }


def native_filters(plans: list[Chart], charts: list[dict], chart_ids: list[int], datasets: dict[str, dict],
                   segmentation: str) -> list[dict[str, Any]]:
    """The dashboard's filter bar: Published date (a time range, on the charts over time) and
    Segment (the `segment` values of the latest run, on every chart with a `segment` column);
    on the dashboard of every segmentation (`segmentation` COMPARED), Segmentation instead of
    Segment (the names in run_history, on every chart)."""
    over_time = [number for plan, number in zip(plans, chart_ids) if plan.over_time]
    others = [number for plan, number in zip(plans, chart_ids) if not plan.over_time]
    empty = {"extraFormData": {}, "filterState": {}, "ownState": {}}
    found = [{
        "id": f"NATIVE_FILTER-published-date-{_slug(segmentation)}", "name": "Published date",
        "filterType": "filter_time", "type": "NATIVE_FILTER", "targets": [{}], "controlValues": {},
        "defaultDataMask": {**empty, "filterState": {"value": "No filter"}}, "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": others}, "chartsInScope": over_time, "tabsInScope": [],
        "description": "When the runs were published (the nights, for the run charts). The charts of the latest"
                       " run (sizes, indexes, profiles) always show the latest run.",
    }]
    if segmentation == COMPARED:
        runs = next((datasets[plan.view] for plan in plans if plan.view == "run_history"), None)
        if runs is not None:
            found.append({
                "id": "NATIVE_FILTER-segmentation", "name": "Segmentation",
                "filterType": "filter_select", "type": "NATIVE_FILTER",
                "targets": [{"datasetUuid": runs["uuid"], "column": {"name": "segmentation"}}],
                "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False, "multiSelect": True,
                                  "searchAllOptions": False, "inverseSelection": False, "sortAscending": True},
                "defaultDataMask": empty, "cascadeParentIds": [],
                "scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": list(chart_ids),
                "tabsInScope": [], "description": "The segmentations to show (default is the one without a name).",
            })
        return found
    segmented = [(plan, chart, number) for plan, chart, number in zip(plans, charts, chart_ids)
                 if any(column["column_name"] == SEGMENT for column in datasets[plan.view]["columns"])]
    source = next((datasets[plan.view] for plan, _, _ in segmented if plan.view == "current_segment_profiles"), None)
    if source is not None:
        found.append({
            "id": f"NATIVE_FILTER-segment-{_slug(segmentation)}", "name": "Segment",
            "filterType": "filter_select", "type": "NATIVE_FILTER",
            "targets": [{"datasetUuid": source["uuid"], "column": {"name": SEGMENT}}],
            "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False, "multiSelect": True,
                              "searchAllOptions": False, "inverseSelection": False, "sortAscending": True},
            "defaultDataMask": empty, "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"],
                      "excluded": [number for number in chart_ids if number not in {n for _, _, n in segmented}]},
            "chartsInScope": [number for _, _, number in segmented], "tabsInScope": [],
            "description": "Segments of the latest run, by id and full name (ids are kept from run to run).",
        })
    return found


HEIGHTS = {"Segment profiles": 60, "Nights": 38, "Customers moving between segments": 70}  # grid units of 8 px


def dashboard_title(segmentation: str) -> str:
    if segmentation == COMPARED:
        return f"{DASHBOARD_TITLE}: every segmentation"
    return DASHBOARD_TITLE if segmentation == DEFAULT else f"{DASHBOARD_TITLE}: {segmentation}"


def dashboard_config(charts: list[dict], widths: list[int], database: str, label_colors: dict[str, str],
                     segmentation: str = DEFAULT, filters: list[dict] | None = None,
                     chart_ids: list[int] | None = None) -> dict[str, Any]:
    """One dashboard: a header, the charts in rows of up to 12 grid columns, the filter bar."""
    title = dashboard_title(segmentation)
    chart_ids = chart_ids or list(range(1, len(charts) + 1))
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
    }
    row, used = None, 12
    for number, chart, width in zip(chart_ids, charts, widths):
        if used + width > 12:
            row, used = f"ROW-{number}", 0
            position["GRID_ID"]["children"].append(row)
            position[row] = {"type": "ROW", "id": row, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                             "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        used += width
        key = f"CHART-{number}"
        position[row]["children"].append(key)
        height = HEIGHTS.get(chart["slice_name"], 50)
        position[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row],
                         "meta": {"uuid": chart["uuid"], "sliceName": chart["slice_name"], "width": width,
                                  "height": height, "chartId": number}}
    return {
        "dashboard_title": title, "description": None, "css": "", "slug": "segments--compared" if segmentation == COMPARED else f"segments-{_slug(segmentation)}",
        "certified_by": None, "certification_details": None, "published": True,
        "uuid": _uuid(database, "dashboard", title), "position": position,
        "metadata": {"color_scheme": "supersetColors", "label_colors": label_colors, "shared_label_colors": [],
                     "color_scheme_domain": [], "map_label_colors": {}, "refresh_frequency": 0,
                     "expanded_slices": {}, "timed_refresh_immune_slices": [], "cross_filters_enabled": True,
                     "native_filter_configuration": filters or [], "default_filters": "{}",
                     "chart_configuration": {}, "global_chart_configuration": {}},
        "version": VERSION,
    }


def bundle_files(connection: Connection, url: sa.URL, dataset: Dataset, user: str = "superset",
                 max_size_psi: float = 0.25) -> dict[str, str]:
    """The bundle's files (path inside the zip -> YAML text) for the database `connection` reads.

    `url` gives the database entry's host, port and database name; `user` its login role (make
    it a reader with `segment db grant-reader`); the password is Superset's mask. `dataset` is
    the default segmentation's declaration when the database stores none; every other
    segmentation is read under its stored one. One dashboard per segmentation.
    """
    database = url.database or "postgres"
    database_uuid = _uuid(database, "database", url.render_as_string(hide_password=True))
    root = f"segmentation_dashboard_{_slug(database)}"
    entry = _slug(database_name(url))
    files: dict[str, Any] = {f"databases/{entry}.yaml": database_config(url, user, database_uuid)}
    next_id = 1
    segmentations = read_segmentations(connection, dataset)
    cross: tuple[dict[str, View], dict[str, dict]] | None = None
    for segmentation in segmentations:
        views = read_views(connection, segmentation.schema)
        datasets = {name: dataset_config(view, segmentation.dataset, database, database_uuid, segmentation.schema)
                    for name, view in views.items()}
        folder = entry if segmentation.is_default else f"{entry}_{segmentation.schema}"
        for name, config in datasets.items():
            files[f"datasets/{folder}/{name}.yaml"] = config
        plans = plan_charts(views, segmentation.name, max_size_psi)
        key = "" if segmentation.is_default else f"{segmentation.name}/"
        charts = [chart_config(plan, database, datasets, key) for plan in plans]
        chart_ids = list(range(next_id, next_id + len(charts)))
        next_id += len(charts)
        prefix = "" if segmentation.is_default else f"{_slug(segmentation.name)}_"
        for plan, chart in zip(plans, charts):
            files[f"charts/{prefix}{_slug(plan.title)}.yaml"] = chart
        label_colors = {label: segment_color(segment_id) for label, segment_id
                        in segment_labels(connection, views, segmentation.schema, segmentation.name).items()}
        label_colors.update(STATUS_COLORS)
        filters = native_filters(plans, charts, chart_ids, datasets, segmentation.name)
        files[f"dashboards/{_slug(dashboard_title(segmentation.name))}.yaml"] = dashboard_config(
            charts, [plan.width for plan in plans], database, label_colors, segmentation.name, filters, chart_ids)
        if segmentation.is_default:
            cross = (views, datasets)
    if len(segmentations) > 1 and cross is not None:  # one more dashboard: every segmentation side by side
        views, datasets = cross
        plans = plan_compared_charts(views, max_size_psi)
        charts = [chart_config(plan, database, datasets, "every segmentation/") for plan in plans]
        chart_ids = list(range(next_id, next_id + len(charts)))
        for plan, chart in zip(plans, charts):
            files[f"charts/compared_{_slug(plan.title)}.yaml"] = chart
        label_colors = {}
        for number, item in enumerate(segmentations):
            colour = SEGMENTATION_COLORS[number % len(SEGMENTATION_COLORS)]
            label_colors.update({item.name: colour, f"{item.name}, published": colour, f"{item.name}, held": HELD_COLOR})
        filters = native_filters(plans, charts, chart_ids, datasets, COMPARED)
        files["dashboards/Customer_segments_compared.yaml"] = dashboard_config(
            charts, [plan.width for plan in plans], database, label_colors, COMPARED, filters, chart_ids)
    files = {"metadata.yaml": {"version": VERSION, "type": "Dashboard",
                               "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat()}, **files}
    return {f"{root}/{path}": yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
            for path, content in files.items()}


def write_bundle(connection: Connection, url: sa.URL, dataset: Dataset, out, user: str = "superset",
                 max_size_psi: float = 0.25) -> int:
    """Write the bundle of `bundle_files` as a zip to `out` (a path or a binary file); return the
    number of charts."""
    files = bundle_files(connection, url, dataset, user, max_size_psi)
    charts = sum(1 for path in files if "/charts/" in path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path, text in files.items():
            bundle.writestr(path, text)
    if hasattr(out, "write"):
        out.write(buffer.getvalue())
        return charts
    try:
        with open(out, "wb") as file:
            file.write(buffer.getvalue())
    except OSError as error:
        raise SegmentationError(f"cannot write the bundle to {out}: {error.strerror}") from None
    return charts
